//! The digit gate: one pass over a digit window that says which numeric rules can match in it,
//! so each rule's regex runs only where it can find something.
//!
//! Source code is full of digit runs (constant tables, versions, dates, hex), and each window
//! used to go through every numeric rule's regex: nine searches with their own start-up cost,
//! that almost never matched. The gate holds one fully built DFA per rule (unanchored, no
//! captures), steps all of them together over the window (independent table lookups, so their
//! latencies overlap), and drops a rule from the pass once its DFA has matched.
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
use regex_automata::util::primitives::StateID;
use regex_automata::{Input, MatchKind};
use regex_syntax::hir::Hir;

/// Largest DFA built for one pattern (bytes); a pattern with a larger one is not gated.
const DFA_LIMIT: usize = 1 << 20;

/// Which gated rules may match: bit `i` for the `i`-th gated pattern.
pub(crate) type Mask = u64;

/// See the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct DigitGate {
    groups: Vec<Group>,
}

/// Patterns compiled into one DFA.
#[derive(Clone, Debug)]
struct Group {
    dfa: Dfa,
    /// The gate bit of each of the DFA's patterns.
    bits: Vec<Mask>,
    /// All of them.
    all: Mask,
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
        // Per group: its patterns' syntax trees, their gate bits, its DFA.
        let mut groups: Vec<(Vec<Hir>, Vec<Mask>, Dfa)> = Vec::new();
        let mut next_bit = 0;
        for p in patterns {
            let hir = (next_bit < Mask::BITS).then(|| parse(p)).flatten();
            let Some(hir) = hir else {
                slots.push(None);
                continue;
            };
            let bit = 1 << next_bit;
            match build(std::slice::from_ref(&hir), DFA_LIMIT) {
                Some(d) => groups.push((vec![hir], vec![bit], d)),
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
        let groups = groups
            .into_iter()
            .map(|(_, bits, dfa)| Group {
                all: bits.iter().fold(0, |a, b| a | b),
                bits,
                dfa,
            })
            .collect();
        (Some(DigitGate { groups }), slots)
    }

    /// The gated patterns with a match in `bytes[start..end]` (look-arounds see the bytes
    /// around it), or `None` when the gate cannot tell (text around the window not ASCII).
    pub(crate) fn matches(&self, bytes: &[u8], start: usize, end: usize) -> Option<Mask> {
        let around = &bytes[start.saturating_sub(1)..(end + 1).min(bytes.len())];
        if !around.is_ascii() {
            return None;
        }
        let input = Input::new(bytes).range(start..end);
        let n = self.groups.len();
        let mut sids = [StateID::ZERO; Mask::BITS as usize];
        for (sid, g) in sids.iter_mut().zip(&self.groups) {
            *sid = g.dfa.start_state_forward(&input).ok()?;
        }
        // The groups still running: one table lookup per group per byte, independent of each
        // other, so their latencies overlap.
        let mut live: Mask = if n == 64 { !0 } else { (1 << n) - 1 };
        let mut mask: Mask = 0;
        let window = &bytes[start..end];
        // Matches are reported one byte late: after the window, feed the byte after it, or the
        // end of input.
        for i in 0..=window.len() {
            if live == 0 {
                break;
            }
            let b = window.get(i).or(bytes.get(end)).copied();
            let mut ks = live;
            while ks != 0 {
                let k = ks.trailing_zeros() as usize;
                ks &= ks - 1;
                let g = &self.groups[k];
                let sid = match b {
                    Some(b) if i < window.len() || end < bytes.len() => {
                        g.dfa.next_state(sids[k], b)
                    }
                    _ => g.dfa.next_eoi_state(sids[k]),
                };
                sids[k] = sid;
                if g.dfa.is_special_state(sid) {
                    if g.dfa.is_match_state(sid) {
                        for m in 0..g.dfa.match_len(sid) {
                            mask |= g.bits[g.dfa.match_pattern(sid, m).as_usize()];
                        }
                        if mask & g.all == g.all {
                            live &= !(1 << k);
                        }
                    } else if g.dfa.is_dead_state(sid) {
                        live &= !(1 << k);
                    } else if g.dfa.is_quit_state(sid) {
                        // Not expected (ASCII mode has no quit bytes); let every rule run.
                        return None;
                    }
                }
            }
        }
        Some(mask)
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
