//! The keyword pass: every ASCII-case-insensitive occurrence of the rules' keywords, overlapping,
//! as `(keyword, start, end)` in the order Aho-Corasick's overlapping search reports them (by
//! end, then by start).
//!
//! Why not Aho-Corasick alone: its DFA over all keywords has about 1,500 states, a transition
//! table far larger than L1, and each byte's lookup waits on the previous one; that pass cost
//! 2.9 ns per byte of source code, more than half of a whole scan. Keyword hits are rare (0.4
//! per KB of source), so most of that work only proves there is nothing. Here a small DFA runs
//! over the keywords' first [`PREFIX`] bytes only (for the built-in rules 514 states × 42 byte
//! classes, `u16` ids premultiplied by the number of classes, ASCII case folded into the class
//! map: 43 KB, of which the part in use stays in L1), over four interleaved stretches of the
//! input so four independent lookups are in flight at once. At each prefix hit the whole
//! keywords with that prefix are compared (`eq_ignore_ascii_case`). Measured on 12.7 MB of
//! Rust source: about 870-1,300 MB/s against 400-440 for the Aho-Corasick DFA. The loop is
//! bound by the latency of those dependent lookups, not by its instruction count: a version with
//! a third fewer instructions per byte (no spills, one test of the states' OR per step) ran at
//! the same speed, and eight stretches ran slower than four. A keyword set the table cannot
//! hold (more than 32,768 entries for the states that end no prefix, or for those that end one;
//! only possible with very large custom sets) uses Aho-Corasick as before.
//!
//! The order matters: `Windows::push` in the engine merges a rule's windows in the order hits
//! arrive, so hits are sorted back into Aho-Corasick's order and the windows, hence the
//! findings, are exactly what they were.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use crate::DetectError;

/// Bytes of each keyword the DFA matches; the rest is compared at a hit. (Measured on source
/// code: 3 ran at about two-thirds the speed, too many short prefixes hit; 5 and 6 were no
/// faster than 4 and need larger tables.)
const PREFIX: usize = 4;
/// Where the match states begin: every state id at or above it ends some prefix, so one test
/// of the four states' bitwise OR tells whether any of them matched.
const MATCH: u16 = 1 << 15;
/// Where the byte classes sit in the table, after the transitions. One table, so the loop
/// holds one pointer for both lookups (with two, the loop ran out of registers and spilled).
const CLASSES: usize = 1 << 17;
/// Entries in the table: transitions, indexed by a state id plus a class (each read from a
/// `u16`, so below `CLASSES` together, which lets the compiler drop the bounds checks), then
/// the 256 byte classes. Only the entries in use are ever touched.
const TABLE: usize = CLASSES + 256;
/// Inputs shorter than this are scanned as one stream.
const MIN_INTERLEAVED: usize = 256;

/// One keyword occurrence: `pattern` indexes the patterns given to [`Keywords::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub(crate) pattern: u32,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Finds the keywords. Build once, scan many.
pub(crate) struct Keywords {
    imp: Imp,
}

enum Imp {
    Prefix(Box<PrefixDfa>),
    Ac(AhoCorasick),
}

impl std::fmt::Debug for Keywords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.imp {
            Imp::Prefix(d) => f
                .debug_struct("Keywords")
                .field("kind", &"prefix DFA")
                .field("keywords", &d.keywords.len())
                .field("states", &(d.n_states))
                .field("classes", &d.stride)
                .finish(),
            Imp::Ac(ac) => f
                .debug_struct("Keywords")
                .field("kind", &"aho-corasick")
                .field("keywords", &ac.patterns_len())
                .finish(),
        }
    }
}

impl Keywords {
    /// `patterns` are lower-case (ASCII) and distinct; matching ignores ASCII case.
    pub(crate) fn new(patterns: &[String]) -> Result<Keywords, DetectError> {
        if !patterns.iter().any(String::is_empty)
            && let Some(d) = PrefixDfa::new(patterns)
        {
            return Ok(Keywords {
                imp: Imp::Prefix(Box::new(d)),
            });
        }
        Ok(Keywords {
            imp: Imp::Ac(aho_corasick(patterns)?),
        })
    }

    /// The same matcher built on Aho-Corasick only (the reference, and the fallback).
    #[cfg(test)]
    pub(crate) fn new_ac(patterns: &[String]) -> Result<Keywords, DetectError> {
        Ok(Keywords {
            imp: Imp::Ac(aho_corasick(patterns)?),
        })
    }

    #[cfg(test)]
    fn is_prefix_dfa(&self) -> bool {
        matches!(self.imp, Imp::Prefix(_))
    }

    /// Appends every occurrence in `hay` to `out` (cleared first), ordered by end then start.
    pub(crate) fn find(&self, hay: &[u8], out: &mut Vec<Hit>) {
        out.clear();
        match &self.imp {
            Imp::Ac(ac) => out.extend(ac.find_overlapping_iter(hay).map(|m| Hit {
                pattern: m.pattern().as_u32(),
                start: m.start(),
                end: m.end(),
            })),
            Imp::Prefix(d) => {
                d.find(hay, out);
                // Distinct keywords never share both ends, so the order is total.
                if out.len() > 1 {
                    out.sort_unstable_by_key(|h| (h.end, h.start));
                }
            }
        }
    }
}

fn aho_corasick(patterns: &[String]) -> Result<AhoCorasick, DetectError> {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .kind(Some(AhoCorasickKind::DFA))
        .build(patterns)
        .map_err(|e| DetectError::Prefilter(e.to_string()))
}

/// An Aho-Corasick DFA over the keywords' prefixes, states numbered so that every state at or
/// above [`MATCH`] ends some prefix, and none below it does.
struct PrefixDfa {
    /// `trans[state + trans[CLASSES + byte]]`: the next state, premultiplied by `stride`;
    /// match states from `MATCH` on.
    trans: Box<[u16; TABLE]>,
    stride: usize,
    n_states: usize,
    /// Per match state (`(state - MATCH) / stride`): the keywords whose prefix ends
    /// there, as (prefix length, keyword index).
    outputs: Vec<Box<[(u8, u32)]>>,
    /// Keyword bytes (lower case) by pattern id.
    keywords: Vec<Box<[u8]>>,
}

impl PrefixDfa {
    /// `None` when the table would not fit.
    fn new(patterns: &[String]) -> Option<PrefixDfa> {
        // Byte classes: 0 for bytes in no prefix, one per other byte, ASCII case folded.
        let mut class = [0u8; 256];
        let mut n_classes = 1usize;
        for p in patterns {
            for &b in &p.as_bytes()[..p.len().min(PREFIX)] {
                let b = b.to_ascii_lowercase();
                if class[b as usize] == 0 {
                    if n_classes > 255 {
                        return None;
                    }
                    class[b as usize] = n_classes as u8;
                    class[b.to_ascii_uppercase() as usize] = n_classes as u8;
                    n_classes += 1;
                }
            }
        }
        let stride = n_classes;
        // The trie of prefixes: `goto[node * stride + class]`, 0 = none (the root is never a
        // child). `own[node]`: keywords whose whole prefix ends at the node.
        let mut goto: Vec<u32> = vec![0; stride];
        let mut own: Vec<Vec<(u8, u32)>> = vec![Vec::new()];
        for (id, p) in patterns.iter().enumerate() {
            let pre = &p.as_bytes()[..p.len().min(PREFIX)];
            let mut node = 0usize;
            for &b in pre {
                let c = class[b as usize] as usize;
                let next = goto[node * stride + c];
                node = if next == 0 {
                    let new = own.len();
                    own.push(Vec::new());
                    goto.extend(std::iter::repeat_n(0, stride));
                    goto[node * stride + c] = new as u32;
                    new
                } else {
                    next as usize
                };
            }
            own[node].push((pre.len() as u8, id as u32));
        }
        let n_states = own.len();
        if n_states * stride > 1 << 16 {
            return None;
        }
        // Breadth-first: failure links, full transitions, outputs along the failure chain.
        let mut delta: Vec<u32> = vec![0; n_states * stride];
        let mut fail = vec![0usize; n_states];
        let mut out: Vec<Vec<(u8, u32)>> = own;
        let mut queue = std::collections::VecDeque::new();
        for c in 0..stride {
            let child = goto[c] as usize;
            if child != 0 {
                delta[c] = child as u32;
                queue.push_back(child);
            }
        }
        while let Some(u) = queue.pop_front() {
            let f = fail[u];
            let inherited = out[f].clone();
            out[u].extend(inherited);
            for c in 0..stride {
                let child = goto[u * stride + c] as usize;
                if child != 0 {
                    fail[child] = delta[f * stride + c] as usize;
                    delta[u * stride + c] = child as u32;
                    queue.push_back(child);
                } else {
                    delta[u * stride + c] = delta[f * stride + c];
                }
            }
        }
        // Renumber: non-match states from 0 (the root stays 0), match states from `MATCH`.
        let mut order: Vec<usize> = (0..n_states).filter(|&s| out[s].is_empty()).collect();
        let n_plain = order.len();
        order.extend((0..n_states).filter(|&s| !out[s].is_empty()));
        let n_match = n_states - n_plain;
        let first_match = usize::from(MATCH);
        if n_plain * stride > first_match || n_match * stride > (1 << 16) - first_match {
            return None;
        }
        // Premultiplied id of the state at `i` in `order`.
        let id = |i: usize| {
            if i < n_plain {
                i * stride
            } else {
                first_match + (i - n_plain) * stride
            }
        };
        let mut new_id = vec![0usize; n_states];
        for (i, &s) in order.iter().enumerate() {
            new_id[s] = id(i);
        }
        let mut trans: Box<[u16; TABLE]> = vec![0u16; TABLE].into_boxed_slice().try_into().ok()?;
        for (i, &s) in order.iter().enumerate() {
            for c in 0..stride {
                trans[id(i) + c] = new_id[delta[s * stride + c] as usize] as u16;
            }
        }
        for (b, &c) in class.iter().enumerate() {
            trans[CLASSES + b] = u16::from(c);
        }
        let outputs = order[n_plain..]
            .iter()
            .map(|&s| std::mem::take(&mut out[s]).into_boxed_slice())
            .collect();
        Some(PrefixDfa {
            trans,
            stride,
            n_states,
            outputs,
            keywords: patterns
                .iter()
                .map(|p| p.as_bytes().to_vec().into_boxed_slice())
                .collect(),
        })
    }

    #[inline(always)]
    fn step(&self, state: u16, b: u8) -> u16 {
        step(&self.trans, state, b)
    }

    /// The keywords whose prefix ends at `end` (exclusive) in `state`, starting before `limit`.
    #[cold]
    #[inline(never)]
    fn report(&self, hay: &[u8], state: u16, end: usize, limit: usize, out: &mut Vec<Hit>) {
        let j = usize::from(state - MATCH) / self.stride;
        for &(plen, id) in self.outputs[j].iter() {
            let plen = usize::from(plen);
            let start = end - plen;
            if start >= limit {
                continue;
            }
            let k = &self.keywords[id as usize];
            if let Some(rest) = hay.get(end..start + k.len())
                && rest.eq_ignore_ascii_case(&k[plen..])
            {
                out.push(Hit {
                    pattern: id,
                    start,
                    end: start + k.len(),
                });
            }
        }
    }

    /// Runs from `state` over `hay[from..to]`, reporting prefixes that start before `limit`.
    fn run(
        &self,
        hay: &[u8],
        from: usize,
        to: usize,
        limit: usize,
        mut state: u16,
        out: &mut Vec<Hit>,
    ) {
        for (i, &b) in hay[from..to].iter().enumerate() {
            state = self.step(state, b);
            if state >= MATCH {
                self.report(hay, state, from + i + 1, limit, out);
            }
        }
    }

    /// Not inlined: inside the engine's scan the loop's four states and five pointers were
    /// spilled to the stack.
    #[inline(never)]
    fn find(&self, hay: &[u8], out: &mut Vec<Hit>) {
        let n = hay.len();
        if n < MIN_INTERLEAVED {
            self.run(hay, 0, n, n, 0, out);
            return;
        }
        // Four stretches; stretch k reports prefixes starting in [k * seg, (k + 1) * seg) (the
        // last one up to n), so it reads up to PREFIX - 1 bytes into the next one. (Measured:
        // two stretches run at about half the speed; six or eight, or arrays of states instead
        // of four named ones, were no faster.)
        let seg = n / 4;
        let (a, b, c, d) = (
            &hay[..seg],
            &hay[seg..2 * seg],
            &hay[2 * seg..3 * seg],
            &hay[3 * seg..4 * seg],
        );
        let mut states = [0u16; 4];
        let mut i = 0;
        while let Some(at) = advance(&self.trans, [a, b, c, d], &mut states, i) {
            for (k, &s) in states.iter().enumerate() {
                if s >= MATCH {
                    self.report(hay, s, k * seg + at, (k + 1) * seg, out);
                }
            }
            i = at;
        }
        let [s0, s1, s2, s3] = states;
        for (k, s) in [s0, s1, s2].into_iter().enumerate() {
            let limit = (k + 1) * seg;
            self.run(hay, limit, (limit + PREFIX - 1).min(n), limit, s, out);
        }
        self.run(hay, 4 * seg, n, n, s3, out);
    }
}

/// Steps four states over four stretches of equal length from `i` on, until one of them
/// reaches a match state (returns the position after that byte) or the stretches end.
///
/// A function of its own, apart from the report: with the call to it inside, or inlined into
/// the loop that calls it, the loop kept its states and pointers in the registers a call
/// preserves, ran out of them and reloaded three pointers and a state from the stack on every
/// step.
#[inline(never)]
fn advance(
    trans: &[u16; TABLE],
    s: [&[u8]; 4],
    states: &mut [u16; 4],
    mut i: usize,
) -> Option<usize> {
    let [a, b, c, d] = s;
    // Equal lengths, so the indexing below needs no bounds checks; one branch per four bytes,
    // on the states' bitwise OR (a match state has the `MATCH` bit, no other does).
    let (b, c, d) = (&b[..a.len()], &c[..a.len()], &d[..a.len()]);
    let [mut s0, mut s1, mut s2, mut s3] = states.map(usize::from);
    let st = |s: usize, x: u8| usize::from(step(trans, s as u16, x));
    while i < a.len() {
        s0 = st(s0, a[i]);
        s1 = st(s1, b[i]);
        s2 = st(s2, c[i]);
        s3 = st(s3, d[i]);
        i += 1;
        if (s0 | s1 | s2 | s3) & usize::from(MATCH) != 0 {
            *states = [s0, s1, s2, s3].map(|s| s as u16);
            return Some(i);
        }
    }
    *states = [s0, s1, s2, s3].map(|s| s as u16);
    None
}

/// One transition. A state plus a class (two `u16`s) is below `CLASSES`, and the compiler
/// knows it: no bounds check, and no truncation as a `u16` sum would need.
#[inline(always)]
fn step(trans: &[u16; TABLE], state: u16, b: u8) -> u16 {
    trans[usize::from(state) + usize::from(trans[CLASSES + usize::from(b)])]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in keyword list as the engine builds it.
    fn builtin() -> Vec<String> {
        let engine = crate::Engine::builtin().expect("rules compile");
        crate::engine::keyword_patterns(engine.rules()).0
    }

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Random text from keyword pieces in random case, random bytes (some non-ASCII) and filler.
    fn text(rng: &mut Rng, kws: &[String], len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 32);
        while out.len() < len {
            match rng.below(6) {
                0 | 1 if !kws.is_empty() => {
                    let k = kws[rng.below(kws.len())].as_bytes();
                    let (a, b) = if rng.below(3) == 0 {
                        let a = rng.below(k.len());
                        (a, a + 1 + rng.below(k.len() - a))
                    } else {
                        (0, k.len())
                    };
                    for &c in &k[a..b] {
                        out.push(if rng.below(2) == 0 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        });
                    }
                }
                2 => out.push(rng.next() as u8),
                3 => out.extend_from_slice("é密".as_bytes()),
                _ => {
                    let n = rng.below(8);
                    out.extend(std::iter::repeat_n(b" _-=:.\"x"[rng.below(8)], n));
                }
            }
        }
        out.truncate(len);
        out
    }

    fn check(new: &Keywords, reference: &Keywords, hay: &[u8]) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        new.find(hay, &mut a);
        reference.find(hay, &mut b);
        assert_eq!(a, b, "input {:?}", String::from_utf8_lossy(hay));
    }

    fn pair(kws: &[String]) -> (Keywords, Keywords) {
        (
            Keywords::new(kws).expect("builds"),
            Keywords::new_ac(kws).expect("builds"),
        )
    }

    /// Lengths that put hits at the start, the end, and across the seams of the four
    /// stretches, below and above the interleaving threshold.
    fn lengths() -> Vec<usize> {
        let mut v: Vec<usize> = (0..=12).collect();
        v.extend(MIN_INTERLEAVED - 3..MIN_INTERLEAVED + 8);
        v.extend([300, 301, 302, 303, 1000, 1001, 1002, 1003, 4099, 20_000]);
        v
    }

    #[test]
    fn builtin_keywords_use_the_prefix_dfa() {
        let kws = builtin();
        assert!(kws.len() > 200);
        assert!(Keywords::new(&kws).unwrap().is_prefix_dfa());
    }

    #[test]
    fn same_hits_as_aho_corasick_on_random_text() {
        let kws = builtin();
        let (new, reference) = pair(&kws);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for len in lengths() {
            for _ in 0..40 {
                check(&new, &reference, &text(&mut rng, &kws, len));
                let random: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                check(&new, &reference, &random);
            }
        }
    }

    #[test]
    fn every_builtin_keyword_at_the_edges_and_across_seams() {
        let kws = builtin();
        let (new, reference) = pair(&kws);
        for k in &kws {
            let k = k.as_bytes();
            for n in [
                k.len(),
                k.len() + 1,
                MIN_INTERLEAVED,
                MIN_INTERLEAVED + 3,
                1001,
            ] {
                if n < k.len() {
                    continue;
                }
                let seg = n / 4;
                let mut starts = vec![0, n - k.len()];
                for s in 1..4 {
                    for back in 0..=k.len() + 1 {
                        starts.push((s * seg).saturating_sub(back).min(n - k.len()));
                    }
                }
                for at in starts {
                    for upper in [false, true] {
                        let mut hay = vec![b'.'; n];
                        hay[at..at + k.len()].copy_from_slice(k);
                        if upper {
                            hay.make_ascii_uppercase();
                        }
                        check(&new, &reference, &hay);
                        // Every truncation of the input, too.
                        if n < 16 {
                            for cut in 0..n {
                                check(&new, &reference, &hay[..cut]);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn custom_keyword_sets() {
        let sets: Vec<Vec<&str>> = vec![
            vec!["x"],
            vec!["@", "q~"],
            vec!["a", "aa", "aaa", "aaaa", "aaaaa", "aaaaaaaaaaaaaaaaaaaaa"],
            vec!["é", "密码", "ß", "\u{7f}", "pass\u{e9}word", "\u{0}\u{0}"],
            vec!["ab", "abcdef", "bcde", "cd", "abcd", "bc"],
            vec!["secret", "secretkey", "ecret", "cret", "retk", "t"],
        ];
        let mut rng = Rng(42);
        for set in sets {
            let kws: Vec<String> = set.iter().map(|s| s.to_string()).collect();
            let (new, reference) = pair(&kws);
            assert!(new.is_prefix_dfa());
            for len in lengths() {
                for _ in 0..20 {
                    check(&new, &reference, &text(&mut rng, &kws, len));
                }
            }
        }
        // No keywords at all: no hits.
        let (new, reference) = pair(&[]);
        check(&new, &reference, b"anything at all");
        let mut v = Vec::new();
        new.find(&[b'a'; 1000], &mut v);
        assert!(v.is_empty());
    }

    #[test]
    fn a_set_too_large_for_the_table_falls_back_and_agrees() {
        // 30,000 keywords over many distinct bytes: far more than 65,536 table entries.
        let mut rng = Rng(7);
        let mut kws: Vec<String> = Vec::new();
        let alphabet: Vec<char> = ('a'..='z')
            .chain('0'..='9')
            .chain("_-.:=/+é".chars())
            .collect();
        while kws.len() < 30_000 {
            let n = 3 + rng.below(6);
            let k: String = (0..n)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            if !kws.contains(&k) {
                kws.push(k);
            }
        }
        let (new, reference) = pair(&kws);
        assert!(!new.is_prefix_dfa());
        for len in [0, 5, 300, 5000] {
            check(&new, &reference, &text(&mut rng, &kws, len));
        }
        // A few hundred of them still fit the table, and agree.
        let small: Vec<String> = kws[..300].to_vec();
        let (new, reference) = pair(&small);
        assert!(new.is_prefix_dfa());
        for len in lengths() {
            check(&new, &reference, &text(&mut rng, &small, len));
        }
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;
        use std::sync::LazyLock;

        static KWS: LazyLock<Vec<String>> = LazyLock::new(builtin);
        static PAIR: LazyLock<(Keywords, Keywords)> = LazyLock::new(|| pair(&KWS));

        fn piece() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                (0..KWS.len(), any::<u64>()).prop_map(|(i, case)| {
                    KWS[i]
                        .bytes()
                        .enumerate()
                        .map(|(j, b)| {
                            if case >> (j % 64) & 1 == 1 {
                                b.to_ascii_uppercase()
                            } else {
                                b
                            }
                        })
                        .collect()
                }),
                (0..KWS.len(), 0usize..30).prop_map(|(i, cut)| {
                    let k = KWS[i].as_bytes();
                    k[..cut.min(k.len())].to_vec()
                }),
                proptest::collection::vec(any::<u8>(), 0..12),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn prefix_dfa_equals_aho_corasick(
                parts in proptest::collection::vec(piece(), 0..120)
            ) {
                let hay: Vec<u8> = parts.concat();
                let (new, reference) = &*PAIR;
                let (mut a, mut b) = (Vec::new(), Vec::new());
                new.find(&hay, &mut a);
                reference.find(&hay, &mut b);
                prop_assert_eq!(a, b);
            }
        }
    }
}
