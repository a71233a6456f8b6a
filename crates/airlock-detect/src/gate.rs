//! The digit gate: one pass over a digit window that says which numeric rules can match in it,
//! so each rule's regex runs only where it can find something.
//!
//! Source code is full of digit runs (constant tables, versions, dates, hex), and each window
//! used to go through every numeric rule's regex: nine searches with their own start-up cost,
//! that almost never matched. The gate holds one fully built DFA per rule (unanchored, no
//! captures). It steps a rule's DFA only over the runs of the window made of bytes a match can
//! contain (digits, separators, upper-case letters) and at least as long as the rule's shortest
//! match, and drops a rule once its DFA has matched (see [`DigitGate::matches`]).
//!
//! The patterns are compiled in ASCII mode (`\d` is `[0-9]`, `\b` is the ASCII word boundary,
//! `(?i)` folds ASCII only). On text that is ASCII, including the byte either side of the window
//! (where `\b` looks), this matches exactly what the Unicode pattern matches. So the gate is only
//! asked about such windows; any other window goes to every rule, as before. A window the gate
//! rejects for a rule holds no match of that rule's regex, and skipping it changes no finding.
//! A rule whose pattern does not compile in ASCII mode, or whose DFA would be large, simply is
//! not gated.

use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::{Input, MatchKind};
use regex_syntax::hir::{Hir, HirKind};

use crate::rules::{match_bytes, stretches};

/// Largest DFA built for one pattern (bytes); a pattern with a larger one is not gated.
const DFA_LIMIT: usize = 1 << 20;

/// Which gated rules may match: bit `i` for the `i`-th gated pattern.
pub(crate) type Mask = u64;

/// See the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct DigitGate {
    groups: Vec<Group>,
    /// `usize::MAX` for each byte a match of some gated pattern can contain (its *alphabet*),
    /// else 0.
    alphabet: [usize; 256],
    /// The shortest match of any gated pattern, at least 1.
    min_len: usize,
    /// Per byte, the bits of the required sets (see [`Group::required`]) it belongs to; each
    /// group's sets have bits of their own, `Group::required_bits`. A run that does not hold
    /// one byte of each of a pattern's sets is not looked at for that pattern.
    required: [Mask; 256],
    /// `fits[n]`: the patterns whose shortest match is at most `n` bytes (`n` up to 64).
    fits: [Mask; 65],
}

/// One pattern's DFA.
#[derive(Clone, Debug)]
struct Group {
    dfa: Dfa,
    /// The bytes a match of this pattern can contain: its DFA steps only over stretches of
    /// them, inside a run of the gate's alphabet. (Upper-case identifiers and spaces fill the
    /// gate's runs in constant tables; only IBAN's pattern has letters in its alphabet.)
    alphabet: [bool; 256],
    /// Sets of bytes of which every match holds at least one byte each (see
    /// [`required_sets`]): a stretch without one of them is not stepped. For most numeric
    /// patterns a separator (`-` for an SSN, `.` for an IPv4 address, `+` for E.164) that a
    /// plain digit run, the usual one in source code's constant tables, does not have; for
    /// IBAN an upper-case letter and a digit, which upper-case names lack.
    required: Vec<[bool; 256]>,
    /// This group's bits in [`DigitGate::required`] (0 when it has no sets, or no bits were
    /// left: then every run is looked at).
    required_bits: Mask,
    /// The pattern's gate bit.
    bit: Mask,
    /// Its shortest match, in bytes.
    min_len: usize,
    /// The bytes a match can begin with, and end with ([`edge_bytes`]): a stretch is stepped
    /// only from its first byte that can begin a match to its last byte that can end one.
    /// Constant tables indent their numbers, and the indentation is in the alphabet of the
    /// patterns with spaces, which then held a required space and were stepped over it.
    first: [bool; 256],
    last: [bool; 256],
}

type Dfa = dense::DFA<Vec<u32>>;

impl DigitGate {
    /// The gate over `patterns`, and for each pattern its bit in the gate's [`Mask`], or `None`
    /// for a pattern that is not gated (it must always run).
    ///
    /// One DFA per pattern. (A union is far larger than its parts: the numeric rules together
    /// would need several megabytes and half a second to build; packing the small ones into
    /// shared DFAs built in 100 ms and scanned no faster.)
    pub(crate) fn new(patterns: &[&str]) -> (Option<DigitGate>, Vec<Option<u32>>) {
        let mut slots = Vec::new();
        // Per group: its pattern's syntax tree, gate bit and DFA.
        let mut groups: Vec<(Hir, Mask, Dfa)> = Vec::new();
        let mut next_bit = 0;
        for p in patterns {
            let hir = (next_bit < Mask::BITS).then(|| parse(p)).flatten();
            let Some(hir) = hir else {
                slots.push(None);
                continue;
            };
            let bit = 1 << next_bit;
            match build(std::slice::from_ref(&hir), DFA_LIMIT) {
                Some(d) => groups.push((hir, bit, d)),
                None => {
                    slots.push(None);
                    continue;
                }
            }
            slots.push(Some(next_bit));
            next_bit += 1;
        }
        if groups.is_empty() {
            return (None, slots);
        }
        let mut bytes = [false; 256];
        let mut groups: Vec<Group> = groups
            .into_iter()
            .map(|(hir, bit, dfa)| {
                let mut alphabet = [false; 256];
                match_bytes(&hir, &mut alphabet);
                for (all, &own) in bytes.iter_mut().zip(&alphabet) {
                    *all |= own;
                }
                let min_len = hir.properties().minimum_len().unwrap_or(0);
                if min_len == 0 {
                    alphabet = [true; 256];
                }
                let (first, last) = if min_len == 0 {
                    ([true; 256], [true; 256])
                } else {
                    (
                        edge_bytes(&hir, Edge::First).0,
                        edge_bytes(&hir, Edge::Last).0,
                    )
                };
                Group {
                    dfa,
                    alphabet,
                    required: required_sets(&hir),
                    required_bits: 0,
                    bit,
                    min_len,
                    first,
                    last,
                }
            })
            .collect();
        let min_len = groups.iter().map(|g| g.min_len).min().unwrap_or(0);
        if min_len == 0 {
            // An empty match can sit anywhere: the whole window is one run.
            bytes = [true; 256];
        }
        let mut required = [0 as Mask; 256];
        let mut next = 0;
        for g in &mut groups {
            if next + g.required.len() > Mask::BITS as usize {
                continue;
            }
            for set in &g.required {
                let bit: Mask = 1 << next;
                next += 1;
                g.required_bits |= bit;
                for (b, bits) in required.iter_mut().enumerate() {
                    if set[b] {
                        *bits |= bit;
                    }
                }
            }
        }
        let mut fits = [0 as Mask; 65];
        for (n, f) in fits.iter_mut().enumerate() {
            for g in groups.iter().filter(|g| g.min_len <= n) {
                *f |= g.bit;
            }
        }
        let gate = DigitGate {
            fits,
            required,
            groups,
            alphabet: bytes.map(|b| if b { usize::MAX } else { 0 }),
            min_len: min_len.max(1),
        };
        (Some(gate), slots)
    }

    /// The gated patterns with a match in `bytes[start..end]` (look-arounds see the bytes
    /// around it), or `None` when the gate cannot tell (text around the window not ASCII).
    ///
    /// A match is made of bytes of the gate's alphabet only (for the built-in rules digits,
    /// upper-case letters, `x`, white space and `().+-`), so it lies in one run of alphabet bytes at
    /// least as long as its pattern's shortest match. A rule's DFA steps only over such runs,
    /// from the start state the byte before the run gives, and is fed the byte after it:
    /// exactly what it sees of that run when it steps over the whole window. Most of a window
    /// is the text around a number (code, words, punctuation) and costs one table lookup per
    /// byte, without a branch that depends on the text, instead of a DFA step per rule.
    pub(crate) fn matches(&self, bytes: &[u8], start: usize, end: usize) -> Option<Mask> {
        let around = &bytes[start.saturating_sub(1)..(end + 1).min(bytes.len())];
        if !around.is_ascii() {
            return None;
        }
        let n = self.groups.len();
        let mut pending: Mask = if n == 64 { !0 } else { (1 << n) - 1 };
        let mut mask: Mask = 0;
        // Length of the alphabet run ending before `i`.
        let mut len = 0usize;
        let mut i = start;
        while i < end && pending != 0 {
            len = (len + 1) & self.alphabet[usize::from(bytes[i])];
            i += 1;
            if len != self.min_len {
                continue;
            }
            // A run long enough for some rule: find its end, and try the rules that fit in it.
            let run = i - len;
            while i < end && self.alphabet[usize::from(bytes[i])] != 0 {
                i += 1;
            }
            // The required sets the run holds a byte of.
            let held = bytes[run..i]
                .iter()
                .fold(0, |acc, &b| acc | self.required[usize::from(b)]);
            let mut ks = pending & self.fits[(i - run).min(64)];
            while ks != 0 {
                let k = ks.trailing_zeros() as usize;
                ks &= ks - 1;
                let g = &self.groups[k];
                if held & g.required_bits == g.required_bits && g.matches_in_run(bytes, run, i)? {
                    mask |= g.bit;
                    pending &= !(1 << k);
                }
            }
            len = 0;
        }
        Some(mask)
    }
}

#[cfg(test)]
impl DigitGate {
    /// The alphabet as text, and the shortest match.
    pub(crate) fn alphabet(&self) -> (String, usize) {
        let bytes = (0..=255u8).filter(|&b| self.alphabet[usize::from(b)] != 0);
        (bytes.map(char::from).collect(), self.min_len)
    }
}

impl Group {
    /// Whether the DFA matches in a stretch of this pattern's own alphabet inside
    /// `bytes[run..end]`, one at least as long as its shortest match. A match lies in one such
    /// stretch, and the DFA sees it as it would stepping over the whole run.
    fn matches_in_run(&self, bytes: &[u8], run: usize, end: usize) -> Option<bool> {
        for (s, e) in stretches(bytes, run, end, |b| self.alphabet[usize::from(b)]) {
            // From the first byte that can begin a match to the last that can end one: every
            // match in the stretch lies there, and the DFA still sees the bytes around it.
            let Some(s) = (s..e).find(|&i| self.first[usize::from(bytes[i])]) else {
                continue;
            };
            let Some(e) = (s..e).rev().find(|&i| self.last[usize::from(bytes[i])]) else {
                continue;
            };
            let e = e + 1;
            let holds_required = || {
                self.required
                    .iter()
                    .all(|r| bytes[s..e].iter().any(|&b| r[usize::from(b)]))
            };
            if e - s >= self.min_len && holds_required() && self.matches(bytes, s, e)? {
                return Some(true);
            }
        }
        Some(false)
    }

    /// Whether the DFA matches in `bytes[start..end]` (with the bytes around as context);
    /// `None` if it gave up (not expected: ASCII mode has no quit bytes).
    fn matches(&self, bytes: &[u8], start: usize, end: usize) -> Option<bool> {
        let dfa = &self.dfa;
        let mut sid = dfa
            .start_state_forward(&Input::new(bytes).range(start..end))
            .ok()?;
        // Matches are reported one byte late: after the run, feed the byte after it, or the
        // end of input.
        for i in start..=end {
            sid = match bytes.get(i) {
                Some(&b) => dfa.next_state(sid, b),
                None => dfa.next_eoi_state(sid),
            };
            if dfa.is_special_state(sid) {
                if dfa.is_match_state(sid) {
                    return Some(true);
                } else if dfa.is_dead_state(sid) {
                    return Some(false);
                } else if dfa.is_quit_state(sid) {
                    return None;
                }
            }
        }
        Some(false)
    }
}

/// Which end of a match [`edge_bytes`] looks at.
#[derive(Clone, Copy, PartialEq)]
enum Edge {
    First,
    Last,
}

/// The bytes a non-empty match of `hir` (ASCII, byte classes) can begin (or end) with, and
/// whether `hir` can match the empty string. Look-arounds match nothing; a class reaching beyond
/// ASCII marks every byte from 0x80 (as `match_bytes` does).
fn edge_bytes(hir: &Hir, edge: Edge) -> ([bool; 256], bool) {
    let mut set = [false; 256];
    let nullable = match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => true,
        HirKind::Literal(lit) => {
            let b = if edge == Edge::First {
                lit.0.first()
            } else {
                lit.0.last()
            };
            match b {
                Some(&b) => {
                    set[usize::from(b)] = true;
                    false
                }
                None => true,
            }
        }
        HirKind::Class(_) => {
            // One character: its bytes are the bytes it can begin and end with.
            match_bytes(hir, &mut set);
            false
        }
        HirKind::Repetition(r) => {
            let (sub, nullable) = edge_bytes(&r.sub, edge);
            set = sub;
            nullable || r.min == 0
        }
        HirKind::Capture(c) => {
            let (sub, nullable) = edge_bytes(&c.sub, edge);
            set = sub;
            nullable
        }
        HirKind::Alternation(alts) => {
            let mut any_nullable = false;
            for a in alts {
                let (sub, nullable) = edge_bytes(a, edge);
                set.iter_mut().zip(sub).for_each(|(x, y)| *x |= y);
                any_nullable |= nullable;
            }
            any_nullable
        }
        // The parts from that end, up to the first that cannot be empty (`all` stops there).
        HirKind::Concat(items) => {
            let mut visit = |h: &Hir| {
                let (sub, nullable) = edge_bytes(h, edge);
                set.iter_mut().zip(sub).for_each(|(x, y)| *x |= y);
                nullable
            };
            match edge {
                Edge::First => items.iter().all(&mut visit),
                Edge::Last => items.iter().rev().all(&mut visit),
            }
        }
    };
    (set, nullable)
}

/// Most sets kept per pattern ([`required_sets`]).
const MAX_REQUIRED_SETS: usize = 3;

/// Sets of bytes such that every match of `hir` holds at least one byte of each, at most
/// [`MAX_REQUIRED_SETS`]: the ones without digits and with the fewest bytes first (numeric
/// patterns are stepped over digit runs, and a set of separators rules most of them out). A set
/// that contains another is dropped: the smaller one says more.
fn required_sets(hir: &Hir) -> Vec<[bool; 256]> {
    let rank = |s: &[bool; 256]| {
        let digit = s[usize::from(b'0')..=usize::from(b'9')].contains(&true);
        (digit, s.iter().filter(|&&x| x).count())
    };
    let mut sets = all_required(hir);
    sets.sort_by_key(rank);
    let mut kept: Vec<[bool; 256]> = Vec::new();
    for s in sets {
        let contains =
            |big: &[bool; 256], small: &[bool; 256]| big.iter().zip(small).all(|(&b, &x)| b || !x);
        if !kept.iter().any(|k| contains(&s, k)) {
            kept.push(s);
        }
    }
    kept.truncate(MAX_REQUIRED_SETS);
    kept
}

/// Every requirement [`required_sets`] chooses from (unsorted, with repeats).
fn all_required(hir: &Hir) -> Vec<[bool; 256]> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Vec::new(),
        // Each byte of a literal is in every match.
        HirKind::Literal(lit) => lit
            .0
            .iter()
            .map(|&b| {
                let mut set = [false; 256];
                set[usize::from(b)] = true;
                set
            })
            .collect(),
        HirKind::Class(_) => {
            let mut set = [false; 256];
            match_bytes(hir, &mut set);
            vec![set]
        }
        HirKind::Repetition(r) if r.min >= 1 => all_required(&r.sub),
        HirKind::Repetition(_) => Vec::new(),
        HirKind::Capture(c) => all_required(&c.sub),
        HirKind::Concat(v) => v.iter().flat_map(all_required).collect(),
        // One byte of the union of each branch's best set: whichever branch matched holds one.
        HirKind::Alternation(v) => {
            let mut all = [false; 256];
            for h in v {
                let Some(best) = required_sets(h).into_iter().next() else {
                    return Vec::new();
                };
                for (x, y) in all.iter_mut().zip(best) {
                    *x |= y;
                }
            }
            vec![all]
        }
    }
}

/// A pattern's syntax tree in ASCII mode.
fn parse(pattern: &str) -> Option<Hir> {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .ok()
}

/// One DFA reporting each of `hirs` wherever it matches, if it is at most `limit` bytes.
fn build(hirs: &[Hir], limit: usize) -> Option<Dfa> {
    let nfa = thompson::Compiler::new()
        .configure(
            thompson::Config::new()
                .utf8(false)
                .which_captures(WhichCaptures::None)
                .nfa_size_limit(Some(1 << 20)),
        )
        .build_many_from_hir(hirs)
        .ok()?;
    dense::Builder::new()
        .configure(
            dense::Config::new()
                .match_kind(MatchKind::All)
                .start_kind(StartKind::Unanchored)
                .accelerate(false)
                .dfa_size_limit(Some(limit))
                .determinize_size_limit(Some(limit)),
        )
        .build_from_nfa(&nfa)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_bytes_of_numeric_patterns() {
        let edges = |p: &str| {
            let hir = parse(p).unwrap();
            let text = |set: [bool; 256]| {
                (0..=255u8)
                    .filter(|&b| set[usize::from(b)])
                    .map(char::from)
                    .collect::<String>()
            };
            (
                text(edge_bytes(&hir, Edge::First).0),
                text(edge_bytes(&hir, Edge::Last).0),
            )
        };
        // Look-arounds and optional parts are passed over; a group's alternatives united.
        assert_eq!(
            edges(r"\b(?:\+?1[ .-]?)?\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b"),
            ("(+0123456789".into(), "0123456789".into())
        );
        assert_eq!(
            edges(r"(?:SSN|ssn)?\s*(\d{3}-\d{2}-\d{4})x?"),
            ("\t\n\u{b}\u{c}\r 0123456789Ss".into(), "0123456789x".into())
        );
    }

    #[test]
    fn required_sets_of_numeric_patterns() {
        let req = |p: &str| {
            required_sets(&parse(p).unwrap())
                .iter()
                .map(|set| {
                    (0..=255u8)
                        .filter(|&b| set[usize::from(b)])
                        .map(char::from)
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            req(r"\b(?P<value>\d{3}-\d{2}-\d{4})\b"),
            ["-", "0123456789"]
        );
        assert_eq!(
            req(r"\b(?P<value>(?:\d{1,3}\.){3}\d{1,3})\b"),
            [".", "0123456789"]
        );
        assert_eq!(
            req(r"(?P<value>(?:\([2-9]\d{2}\)\s?|\b[2-9]\d{2}[ -])[2-9]\d{2}[ -]\d{4})\b"),
            [" -", "23456789"]
        );
        // IBAN: an upper-case letter and a digit, which names in upper case lack.
        assert_eq!(
            req(r"\b(?P<value>[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?)\b"),
            ["ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789"]
        );
        // A plain digit run can match: only digits are required.
        assert_eq!(req(r"\b[2-6]\d{12,18}\b"), ["23456"]);
        // An optional part requires nothing; an alternative without a requirement neither.
        assert!(req(r"a?\d*").is_empty());
        assert!(req(r"(?:x|\b)").is_empty());
    }

    #[test]
    fn reports_each_pattern_that_matches() {
        let (gate, slots) = DigitGate::new(&[
            r"\b(?P<value>\d{3}-\d{2}-\d{4})\b",
            r"\p{Han}\d",
            r"\b(?P<value>(?:\d{1,3}\.){3}\d{1,3})\b",
        ]);
        let gate = gate.unwrap();
        assert_eq!(slots, vec![Some(0), None, Some(1)]);
        let text = b"ssn 536-22-1234 and ip 10.1.2.3 end";
        assert_eq!(gate.matches(text, 0, text.len()), Some(0b11));
        assert_eq!(gate.matches(text, 0, 16), Some(0b01));
        // `\b` looks at the byte after the window: "536-22-123" then "4" is not a match.
        assert_eq!(gate.matches(text, 0, 14), Some(0));
        assert_eq!(gate.matches(text, 16, text.len()), Some(0b10));
        // A match ending at the end of the text.
        assert_eq!(gate.matches(b"10.1.2.3", 0, 8), Some(0b10));
        // Not ASCII around the window: the gate cannot tell.
        let t = "é536-22-1234".as_bytes();
        assert_eq!(gate.matches(t, 2, t.len()), None);
    }
}
