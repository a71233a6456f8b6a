//! Rule definitions (the TOML data model) and their compiled form.

use std::sync::{Arc, OnceLock};

use regex_automata::meta;
use regex_automata::util::syntax;
use regex_syntax::hir::{Hir, HirKind};
use serde::Deserialize;

use crate::covert::Detector;
use crate::{Category, Confidence, DetectError, Severity};

/// The built-in rule packs, embedded at build time: (origin name, TOML text).
pub const BUILTIN_PACKS: &[(&str, &str)] = &[
    (
        "rules/secrets.toml",
        include_str!("../../../rules/secrets.toml"),
    ),
    ("rules/pii.toml", include_str!("../../../rules/pii.toml")),
    (
        "rules/covert.toml",
        include_str!("../../../rules/covert.toml"),
    ),
];

/// Default bytes searched before a keyword hit.
pub const DEFAULT_WINDOW_BEFORE: usize = 96;
/// Default bytes searched after a keyword hit.
pub const DEFAULT_WINDOW_AFTER: usize = 320;
/// Largest window a rule may ask for.
pub const MAX_WINDOW: usize = 64 * 1024;

/// One rule pack file: `[[rule]]` tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    #[serde(default)]
    pub rule: Vec<RuleDef>,
}

/// How a rule's candidate windows are found before its regex runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// Windows around hits of the rule's `keywords` (case-insensitive). The default.
    #[default]
    Keywords,
    /// Windows around runs of digits (for numeric personal data: phones, cards, ids, IBANs).
    Digits,
    /// The regex runs over the whole text. Slow; for custom rules without a literal.
    Always,
}

/// A validator run on the matched value after the regex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validator {
    /// GitHub/npm style token: `prefix_` + 30 random base62 + 6 base62 CRC32. A valid checksum
    /// raises confidence to high; an invalid one lowers it to low.
    Crc32Base62,
    /// Luhn check digit (payment cards).
    Luhn,
    /// IBAN: country length and ISO 7064 mod 97-10.
    Iban,
    /// China resident identity number: date and ISO 7064 MOD 11-2 check digit.
    ChinaId,
    /// US social security number: area/group/serial ranges.
    UsSsn,
    /// IPv4 address: octets in range; notes public vs private.
    Ipv4,
    /// E-mail address: plausible domain, not a documentation domain.
    Email,
    /// Phone number: digit count, not a date or a run of one digit.
    Phone,
    /// JWT: header and payload decode to JSON objects, header has `alg`.
    Jwt,
    /// Base64 of `user:password` (Docker config, HTTP basic auth).
    BasicAuthB64,
    /// A generic value assigned to a secret-looking name: not an identifier, reference or UUID.
    GenericSecret,
}

/// A rule as written in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    pub id: String,
    pub category: Category,
    pub description: String,
    /// Regex (Rust `regex` syntax) with a named capture `value` for the sensitive part; without
    /// it the whole match is the value. Exactly one of `pattern` and `detector` is given.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Built-in covert-Unicode detector name (only for category `covert`).
    #[serde(default)]
    pub detector: Option<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub anchor: Anchor,
    #[serde(default)]
    pub validator: Option<Validator>,
    pub severity: Severity,
    pub confidence: Confidence,
    /// Placeholder label, e.g. `GITHUB_TOKEN`. Defaults to the id upper-cased.
    #[serde(default)]
    pub label: Option<String>,
    /// Minimum Shannon entropy of the value in bits per byte.
    #[serde(default)]
    pub min_entropy: Option<f64>,
    /// Bytes searched before a keyword hit.
    #[serde(default)]
    pub window_before: Option<usize>,
    /// Bytes searched after a keyword hit.
    #[serde(default)]
    pub window_after: Option<usize>,
    /// Reject values that look like placeholders or documentation examples. Default: true
    /// for secrets, false otherwise.
    #[serde(default)]
    pub placeholder_check: Option<bool>,
    /// A generic rule: its finding is dropped where a specific rule found an overlapping value.
    #[serde(default)]
    pub generic: bool,
    #[serde(default)]
    pub examples: Vec<String>,
    #[serde(default)]
    pub negative_examples: Vec<String>,
    #[serde(default)]
    pub references: Vec<String>,
    /// Free-form sets this rule belongs to; `disable` accepts set names.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: Arc<str>,
    pub category: Category,
    pub description: String,
    pub severity: Severity,
    pub confidence: Confidence,
    pub keywords: Vec<String>,
    pub anchor: Anchor,
    pub validator: Option<Validator>,
    pub label: Arc<str>,
    pub min_entropy: Option<f64>,
    pub window_before: usize,
    pub window_after: usize,
    pub placeholder_check: bool,
    pub generic: bool,
    pub examples: Vec<String>,
    pub negative_examples: Vec<String>,
    pub references: Vec<String>,
    pub tags: Vec<String>,
    /// Where the rule came from (`rules/secrets.toml`, a config path...).
    pub origin: Arc<str>,
    /// The pattern compiled with its Unicode syntax: on first use for the built-in rules (see
    /// [`Rule::unicode_regex`]), at once for the others.
    pub(crate) regex: OnceLock<Option<meta::Regex>>,
    /// The same pattern in ASCII mode, for windows of ASCII text; compiled on first use, `None`
    /// when it does not compile (`\p{Han}`). See [`Rule::ascii_regex`].
    pub(crate) ascii: OnceLock<Option<meta::Regex>>,
    /// The regex source (for the digit gate).
    pub(crate) pattern: Option<String>,
    pub(crate) value_group: Option<usize>,
    /// The value is the whole match (no `value` group, or one with only look-arounds such as
    /// `\b` beside it), so a search without captures finds it.
    pub(crate) value_is_match: bool,
    /// Bytes no match of the pattern can contain, and its shortest match: see [`Cuts`].
    pub(crate) cuts: Option<Cuts>,
    pub(crate) detector: Option<Detector>,
}

/// What a window that is not ASCII can be cut by. A match of the pattern never contains a
/// *cut* byte (one no literal or class of its syntax tree can produce, by the Unicode syntax
/// the rule's regex uses), so no match spans one, and searching the stretches between cut bytes
/// one by one finds exactly the matches a search of the whole window finds: look-arounds such
/// as `\b` still see the bytes outside each stretch. A stretch shorter than the shortest match
/// holds none. Why it matters: in a window holding a non-ASCII byte the Unicode regex runs, its
/// lazy DFA gives up on Unicode `\b`, and the capture engines step the whole window. Data files
/// of code points and digits (Unicode's own test files) merged into one window of megabytes and
/// were scanned at 13 MB/s; cut, most stretches are shorter than any numeric match, and the
/// rest are mostly ASCII, for the small ASCII-mode regex.
#[derive(Debug, Clone)]
pub(crate) struct Cuts {
    /// Bit `b` set: byte `b` is a cut byte.
    bits: [u64; 4],
    /// The shortest match in bytes (at least 1: a pattern that can match empty has no cuts).
    pub(crate) min_len: usize,
}

impl Cuts {
    /// The cuts of a pattern (its syntax tree, parsed as the rule's regex parses it), if it has
    /// any: `None` for a pattern that can match the empty string or whose matches can hold
    /// every byte.
    pub(crate) fn of(hir: &Hir) -> Option<Cuts> {
        let min_len = hir.properties().minimum_len()?;
        if min_len == 0 {
            return None;
        }
        let mut can = [false; 256];
        match_bytes(hir, &mut can);
        let mut bits = [0u64; 4];
        for (b, &c) in can.iter().enumerate() {
            if !c {
                bits[b / 64] |= 1 << (b % 64);
            }
        }
        (bits != [0; 4]).then_some(Cuts { bits, min_len })
    }

    #[inline]
    pub(crate) fn is_cut(&self, b: u8) -> bool {
        self.bits[usize::from(b / 64)] & (1 << (b % 64)) != 0
    }
}

/// The maximal stretches of `bytes[start..end]` made of bytes `keep` accepts, in order, as
/// `(start, end)`. (Windows split at cut bytes, and the digit gate's runs of a pattern's
/// alphabet.)
#[inline]
pub(crate) fn stretches(
    bytes: &[u8],
    start: usize,
    end: usize,
    keep: impl Fn(u8) -> bool,
) -> impl Iterator<Item = (usize, usize)> {
    let mut s = start;
    std::iter::from_fn(move || {
        while s < end && !keep(bytes[s]) {
            s += 1;
        }
        if s >= end {
            return None;
        }
        let from = s;
        while s < end && keep(bytes[s]) {
            s += 1;
        }
        Some((from, s))
    })
}

/// Marks in `set` every byte a match of `hir` can contain; every non-ASCII byte as soon as a
/// class reaches beyond ASCII (a UTF-8 byte of a character class is not worth working out).
pub(crate) fn match_bytes(hir: &Hir, set: &mut [bool; 256]) {
    use regex_syntax::hir::Class;
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(lit) => lit.0.iter().for_each(|&b| set[usize::from(b)] = true),
        HirKind::Class(Class::Bytes(c)) => {
            for r in c.ranges() {
                (r.start()..=r.end()).for_each(|b| set[usize::from(b)] = true);
            }
        }
        HirKind::Class(Class::Unicode(c)) => {
            for r in c.ranges() {
                let (lo, hi) = (u32::from(r.start()), u32::from(r.end()));
                (lo..=hi.min(0x7F)).for_each(|b| set[b as usize] = true);
                if hi > 0x7F {
                    set[0x80..].fill(true);
                }
            }
        }
        HirKind::Repetition(r) => match_bytes(&r.sub, set),
        HirKind::Capture(c) => match_bytes(&c.sub, set),
        HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().for_each(|h| match_bytes(h, set)),
    }
}

impl Rule {
    /// The pattern source, if this is a regex rule.
    pub fn is_regex(&self) -> bool {
        self.pattern.is_some()
    }

    /// The pattern compiled with its own (Unicode) syntax; used for windows that are not ASCII.
    /// Compiled on first use for the built-in rules: building all of them cost 300–400 ms of CPU
    /// at every start (bounded repetitions of Unicode classes, such as `[\w.-]{0,30}`, copy a
    /// large UTF-8 automaton once per repetition), most of it for a text that is ASCII, where
    /// the ASCII-mode regex serves. That every built-in pattern compiles is a test
    /// (`every_builtin_pattern_compiles`); any other rule is compiled when the engine is built,
    /// so an error in it is reported then.
    pub(crate) fn unicode_regex(&self) -> Option<&meta::Regex> {
        self.regex
            .get_or_init(|| build_unicode(self.pattern.as_deref()?).ok())
            .as_ref()
    }

    /// The covert detector name, if this is a covert built-in rule.
    pub fn detector_name(&self) -> Option<&'static str> {
        self.detector.map(Detector::as_str)
    }

    /// The pattern compiled in ASCII mode: `\d`, `\w`, `\s`, `\b` and `(?i)` over ASCII only,
    /// and a class such as `[^\s"]` as a set of bytes. On a haystack whose searched span and the
    /// byte either side of it (where `\b`, `^` and `$` look) are ASCII, it matches exactly where
    /// the Unicode pattern does, with the same groups: every class, look-around and case fold
    /// agrees with its Unicode form on ASCII characters, and the syntax tree is otherwise the
    /// same. Its automata are far smaller (Unicode `\w` alone is hundreds of NFA states), so the
    /// lazy DFA builds fewer states and the capture engines step fewer threads. Compiled on
    /// first use: most rules never have a window in a given text.
    pub(crate) fn ascii_regex(&self) -> Option<&meta::Regex> {
        self.ascii
            .get_or_init(|| {
                let pattern = self.pattern.as_deref()?;
                meta::Regex::builder()
                    .syntax(syntax::Config::new().unicode(false).utf8(false))
                    .configure(regex_config())
                    .build(pattern)
                    .ok()
            })
            .as_ref()
    }

    pub(crate) fn compile(def: RuleDef, origin: &str) -> Result<Rule, DetectError> {
        let err = |message: String| DetectError::Rule {
            origin: origin.to_string(),
            id: def.id.clone(),
            message,
        };
        if def.id.is_empty()
            || !def
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(err(
                "id must be non-empty and use only [A-Za-z0-9._-]".into()
            ));
        }
        // The syntax tree, parsed once: it validates the pattern, and the rest is worked out
        // from it. Built-in rules compile their regex on first use (see `unicode_regex`).
        let builtin = BUILTIN_PACKS.iter().any(|(o, _)| *o == origin);
        let (hir, regex, value_group, detector) = match (&def.pattern, &def.detector) {
            (Some(p), None) => {
                let hir = regex_syntax::parse(p)
                    .map_err(|e| err(format!("pattern does not compile: {e}")))?;
                let regex = OnceLock::new();
                if !builtin {
                    let re = build_unicode(p)
                        .map_err(|e| err(format!("pattern does not compile: {e}")))?;
                    let _ = regex.set(Some(re));
                }
                let group = value_group_index(&hir);
                (Some(hir), regex, group, None)
            }
            (None, Some(d)) => {
                if def.category != Category::Covert {
                    return Err(err(
                        "`detector` is only allowed for category \"covert\"".into()
                    ));
                }
                let det = Detector::from_name(d).ok_or_else(|| {
                    err(format!(
                        "unknown detector \"{d}\" (expected one of: {})",
                        Detector::NAMES.join(", ")
                    ))
                })?;
                (None, OnceLock::new(), None, Some(det))
            }
            (Some(_), Some(_)) => {
                return Err(err("give either `pattern` or `detector`, not both".into()));
            }
            (None, None) => return Err(err("missing `pattern`".into())),
        };
        if hir.is_some()
            && def.anchor == Anchor::Keywords
            && def.keywords.iter().all(|k| k.is_empty())
        {
            return Err(err(
                "needs at least one non-empty keyword (or `anchor = \"digits\"` / `\"always\"`)"
                    .into(),
            ));
        }
        if let Some(e) = def.min_entropy
            && !(0.0..=8.0).contains(&e)
        {
            return Err(err("min_entropy must be between 0 and 8".into()));
        }
        let window_before = def.window_before.unwrap_or(DEFAULT_WINDOW_BEFORE);
        let window_after = def.window_after.unwrap_or(DEFAULT_WINDOW_AFTER);
        if window_before > MAX_WINDOW || window_after > MAX_WINDOW {
            return Err(err(format!(
                "window_before/window_after must be at most {MAX_WINDOW}"
            )));
        }
        let label = def.label.clone().unwrap_or_else(|| {
            def.id
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect()
        });
        let cuts = hir.as_ref().and_then(Cuts::of);
        let value_is_match =
            value_group.is_none() || hir.as_ref().is_some_and(value_is_whole_match);
        Ok(Rule {
            id: def.id.as_str().into(),
            category: def.category,
            description: def.description,
            severity: def.severity,
            confidence: def.confidence,
            keywords: def.keywords,
            anchor: def.anchor,
            validator: def.validator,
            label: label.into(),
            min_entropy: def.min_entropy,
            window_before,
            window_after,
            placeholder_check: def
                .placeholder_check
                .unwrap_or(def.category == Category::Secret),
            generic: def.generic,
            examples: def.examples,
            negative_examples: def.negative_examples,
            references: def.references,
            tags: def.tags,
            origin: origin.into(),
            pattern: if hir.is_some() {
                def.pattern.clone()
            } else {
                None
            },
            regex,
            ascii: OnceLock::new(),
            cuts,
            value_group,
            value_is_match,
            detector,
        })
    }
}

/// A rule pattern compiled with its own syntax (Unicode unless it says otherwise).
fn build_unicode(pattern: &str) -> Result<meta::Regex, String> {
    meta::Regex::builder()
        .configure(regex_config())
        .build(pattern)
        .map_err(|e| e.to_string())
}

/// The index of the capture group named `value`, as the compiled regex numbers it (group 0 is
/// the whole match; the syntax tree's capture indices are the regex's group indices).
fn value_group_index(hir: &Hir) -> Option<usize> {
    match hir.kind() {
        HirKind::Capture(c) if c.name.as_deref() == Some("value") => Some(c.index as usize),
        HirKind::Capture(c) => value_group_index(&c.sub),
        HirKind::Repetition(r) => value_group_index(&r.sub),
        HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().find_map(value_group_index),
        _ => None,
    }
}

/// The meta regex settings of every rule pattern.
fn regex_config() -> meta::Config {
    meta::Config::new()
        .nfa_size_limit(Some(8 << 20))
        .hybrid_cache_capacity(2 << 20)
}

/// Whether the `value` group of `pattern` always spans the whole match: the pattern is the
/// group alone, or the group between zero-width assertions (`\b(?P<value>…)\b`).
fn value_is_whole_match(hir: &Hir) -> bool {
    let is_value =
        |h: &Hir| matches!(h.kind(), HirKind::Capture(c) if c.name.as_deref() == Some("value"));
    match hir.kind() {
        HirKind::Capture(_) => is_value(hir),
        HirKind::Concat(items) => {
            items.iter().filter(|h| is_value(h)).count() == 1
                && items
                    .iter()
                    .all(|h| is_value(h) || matches!(h.kind(), HirKind::Look(_) | HirKind::Empty))
        }
        _ => false,
    }
}

/// Parse one rule pack.
pub(crate) fn parse_rule_file(text: &str, origin: &str) -> Result<Vec<RuleDef>, DetectError> {
    let file: RuleFile = toml::from_str(text).map_err(|e| DetectError::RuleFile {
        origin: origin.to_string(),
        message: e.to_string(),
    })?;
    let mut seen = std::collections::HashSet::new();
    for r in &file.rule {
        if !seen.insert(r.id.clone()) {
            return Err(DetectError::DuplicateId {
                origin: origin.to_string(),
                id: r.id.clone(),
            });
        }
    }
    Ok(file.rule)
}
