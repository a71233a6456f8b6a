//! A small, strict JSON parser that keeps byte spans.
//!
//! `serde_json::Value` loses where each string literal sits in the original bytes, and
//! re-serialising a `Value` reorders nothing but still rewrites number formatting, escapes and
//! whitespace. To forward a request with only the changed string literals touched, we need the
//! span of every string. This parser is a single pass over validated UTF-8 text, strict about the
//! grammar (RFC 8259), bounded in nesting depth, and decodes strings lazily.

use std::borrow::Cow;

/// Maximum nesting depth accepted (same as serde_json's default).
pub const MAX_DEPTH: u32 = 128;

/// Why a document is not valid JSON (byte offset into the text that was parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub offset: usize,
    pub reason: &'static str,
}

/// A string literal: `start..end` is the raw content between the quotes.
#[derive(Debug, Clone, Copy)]
pub struct Str {
    pub start: usize,
    pub end: usize,
    pub escaped: bool,
}

#[derive(Debug)]
pub enum Val {
    Null,
    Bool(bool),
    /// Byte span of the number's text.
    Num(usize, usize),
    Str(Str),
    Arr(Vec<Val>),
    Obj(Vec<(Str, Val)>),
    /// The byte span of an array element left unparsed because its bytes are those of an element
    /// parsed and inspected before ([`parse_skipping`], `prefix.rs`).
    Known(usize, usize),
}

impl Val {
    pub fn as_str(&self) -> Option<&Str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }
    /// First member with this (decoded) key.
    pub fn get<'v>(&'v self, src: &str, key: &str) -> Option<&'v Val> {
        match self {
            Val::Obj(m) => m.iter().find(|(k, _)| k.eq_str(src, key)).map(|(_, v)| v),
            _ => None,
        }
    }
    /// Raw JSON text of a string (with quotes) or number value.
    pub fn raw<'s>(&self, src: &'s str) -> Option<&'s str> {
        match self {
            Val::Str(s) => src.get(s.start - 1..s.end + 1),
            Val::Num(a, b) => src.get(*a..*b),
            _ => None,
        }
    }
    pub fn has(&self, src: &str, key: &str) -> bool {
        self.get(src, key).is_some()
    }
    /// The decoded value of a string member (`None` if absent or not a string).
    pub fn get_str<'s>(&self, src: &'s str, key: &str) -> Option<Cow<'s, str>> {
        self.get(src, key)
            .and_then(Val::as_str)
            .map(|s| s.decode(src).text)
    }
}

/// A decoded string plus what is needed to map decoded byte offsets back to raw ones.
pub struct Decoded<'s> {
    pub text: Cow<'s, str>,
    /// The raw literal content (between the quotes).
    raw: &'s str,
    /// Offset of the raw content (just after the opening quote) in the parsed text.
    pub raw_start: usize,
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

#[inline]
fn word(b: &[u8], i: usize) -> Option<u64> {
    let a: [u8; 8] = b.get(i..i + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(a))
}

/// Index of the first `"`, `\` or control byte at or after `i` (or `b.len()`). Eight bytes at
/// a time: string contents in agent requests are long, with frequent escapes (source code in a
/// tool result has one every 20–30 bytes), so the match is located from the word's bit mask
/// rather than by a second, bytewise loop. In the has-zero-byte test a borrow can only set bits
/// *above* the first zero byte, so the lowest set bit is exact.
#[inline]
fn find_special(b: &[u8], mut i: usize) -> usize {
    while let Some(x) = word(b, i) {
        let q = x ^ (LO * b'"' as u64);
        let s = x ^ (LO * b'\\' as u64);
        let t = ((q.wrapping_sub(LO) & !q)
            | (s.wrapping_sub(LO) & !s)
            | (x.wrapping_sub(LO * 0x20) & !x))
            & HI;
        if t != 0 {
            return i + (t.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return i;
        }
        i += 1;
    }
    b.len()
}

/// Index of the first `\\` at or after `i` (or `b.len()`).
#[inline]
fn find_backslash(b: &[u8], mut i: usize) -> usize {
    while let Some(x) = word(b, i) {
        let s = x ^ (LO * b'\\' as u64);
        let t = s.wrapping_sub(LO) & !s & HI;
        if t != 0 {
            return i + (t.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'\\' {
            return i;
        }
        i += 1;
    }
    b.len()
}

/// The escape sequence at `b[at]` (a backslash): the character and the raw length.
fn escape_at(b: &[u8], at: usize) -> (char, usize) {
    match b.get(at + 1) {
        Some(b'"') => ('"', 2),
        Some(b'\\') => ('\\', 2),
        Some(b'/') => ('/', 2),
        Some(b'b') => ('\u{8}', 2),
        Some(b'f') => ('\u{c}', 2),
        Some(b'n') => ('\n', 2),
        Some(b'r') => ('\r', 2),
        Some(b't') => ('\t', 2),
        Some(b'u') => {
            let hi = hex4(b, at + 2).unwrap_or(0xFFFD);
            if (0xD800..0xDC00).contains(&hi) {
                let lo = if b.get(at + 6) == Some(&b'\\') && b.get(at + 7) == Some(&b'u') {
                    hex4(b, at + 8)
                } else {
                    None
                };
                match lo {
                    Some(lo) if (0xDC00..0xE000).contains(&lo) => {
                        let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        (char::from_u32(c).unwrap_or('\u{FFFD}'), 12)
                    }
                    _ => ('\u{FFFD}', 6),
                }
            } else {
                (char::from_u32(hi).unwrap_or('\u{FFFD}'), 6)
            }
        }
        _ => ('\u{FFFD}', 1),
    }
}

impl Decoded<'_> {
    /// Raw offsets (in the parsed text) of decoded offsets on char boundaries. One pass.
    pub fn raw_offsets(&self, decoded: &[usize]) -> Vec<usize> {
        if matches!(self.text, Cow::Borrowed(_)) {
            return decoded.iter().map(|d| self.raw_start + d).collect();
        }
        let mut order: Vec<usize> = (0..decoded.len()).collect();
        order.sort_by_key(|&i| decoded[i]);
        let mut out = vec![0; decoded.len()];
        let b = self.raw.as_bytes();
        let (mut raw, mut dec) = (0usize, 0usize);
        let mut k = 0;
        while k < order.len() {
            let want = decoded[order[k]];
            let next = find_backslash(b, raw);
            if want <= dec + (next - raw) {
                // inside the plain run before the next escape
                out[order[k]] = self.raw_start + raw + (want - dec);
                k += 1;
                continue;
            }
            if next >= b.len() {
                out[order[k]] = self.raw_start + b.len();
                k += 1;
                continue;
            }
            dec += next - raw;
            let (ch, rl) = escape_at(b, next);
            raw = next + rl;
            dec += ch.len_utf8();
        }
        out
    }

    /// Map decoded-coordinate edits (`start..end` in [`Decoded::text`], unescaped `text`) to
    /// edits of the parsed document (raw offsets, `text` escaped for a JSON string). One pass.
    pub fn map_edits(&self, edits: Vec<Edit>, out: &mut Vec<Edit>) {
        if edits.is_empty() {
            return;
        }
        let pos: Vec<usize> = edits.iter().flat_map(|e| [e.start, e.end]).collect();
        let raw = self.raw_offsets(&pos);
        for (i, e) in edits.into_iter().enumerate() {
            out.push(Edit {
                start: raw[2 * i],
                end: raw[2 * i + 1],
                text: escape(&e.text),
            });
        }
    }

    pub fn raw_offset(&self, dec: usize) -> usize {
        self.raw_offsets(&[dec])[0]
    }
}

impl Str {
    pub fn raw<'s>(&self, src: &'s str) -> &'s str {
        src.get(self.start..self.end).unwrap_or("")
    }
    pub fn eq_str(&self, src: &str, other: &str) -> bool {
        if self.escaped {
            self.decode(src).text == other
        } else {
            self.raw(src) == other
        }
    }
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
    /// Decode the literal. The parser already validated every escape.
    pub fn decode<'s>(&self, src: &'s str) -> Decoded<'s> {
        let raw = self.raw(src);
        if !self.escaped {
            return Decoded {
                text: Cow::Borrowed(raw),
                raw,
                raw_start: self.start,
            };
        }
        let b = raw.as_bytes();
        let mut out = String::with_capacity(raw.len());
        let mut i = 0;
        loop {
            let at = find_backslash(b, i);
            out.push_str(raw.get(i..at).unwrap_or(""));
            if at >= b.len() {
                break;
            }
            let (ch, rl) = escape_at(b, at);
            out.push(ch);
            i = (at + rl).min(b.len());
        }
        Decoded {
            text: Cow::Owned(out),
            raw,
            raw_start: self.start,
        }
    }
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    let mut v = 0u32;
    for &c in s {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// Escape `s` as the content of a JSON string literal (no surrounding quotes).
pub fn escape_into(s: &str, out: &mut String) {
    let b = s.as_bytes();
    let mut seg = 0;
    for (i, &c) in b.iter().enumerate() {
        let rep: Option<&str> = match c {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(s.get(seg..i).unwrap_or(""));
        match rep {
            Some(r) => out.push_str(r),
            None => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{:04x}", c);
            }
        }
        seg = i + 1;
    }
    out.push_str(s.get(seg..).unwrap_or(""));
}

pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    escape_into(s, &mut o);
    o
}

/// A replacement of `start..end` (byte offsets in some text) by `text`.
#[derive(Debug, Clone)]
pub struct Edit {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// Sorts `edits` by position and drops any that overlaps an earlier one (the first wins), so
/// they can be applied in order.
pub fn order_edits(edits: &mut Vec<Edit>) {
    edits.sort_by_key(|e| (e.start, e.end));
    let mut pos = 0;
    edits.retain(|e| {
        let keep = e.start >= pos && e.end >= e.start;
        if keep {
            pos = e.end;
        }
        keep
    });
}

/// Apply non-overlapping edits (any order) to `src`; an edit overlapping an earlier one is
/// dropped (the first wins, as in [`order_edits`]).
pub fn apply_edits(src: &str, edits: &mut [Edit]) -> String {
    edits.sort_by_key(|e| (e.start, e.end));
    let added: usize = edits.iter().map(|e| e.text.len()).sum();
    let mut out = String::with_capacity(src.len() + added);
    let mut pos = 0;
    for e in edits.iter() {
        if e.start < pos || e.end < e.start {
            continue; // overlapping edit: the first one wins
        }
        out.push_str(src.get(pos..e.start).unwrap_or(""));
        out.push_str(&e.text);
        pos = e.end;
    }
    out.push_str(src.get(pos..).unwrap_or(""));
    out
}

/// A body as UTF-8 text and its parse tree, errors as [`crate::WireError`].
pub fn parse_body(body: &[u8]) -> Result<(&str, Val), crate::WireError> {
    let src = std::str::from_utf8(body).map_err(|e| crate::WireError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let root = parse(src).map_err(|e| crate::WireError::Json {
        offset: e.offset,
        reason: e.reason,
    })?;
    Ok((src, root))
}

/// Parse a complete JSON document.
pub fn parse(src: &str) -> Result<Val, JsonError> {
    let p = Parser {
        b: src.as_bytes(),
        i: 0,
        skip: Skip::NONE,
        skipped: 0,
        top: None,
    };
    document(p).map(|(v, _)| v)
}

/// One whole document: the value, with nothing but whitespace around it.
fn document(mut p: Parser<'_>) -> Result<(Val, Parser<'_>), JsonError> {
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(p.err("trailing characters after the JSON value"));
    }
    Ok((v, p))
}

/// Elements of one array that need not be parsed: the array whose `[` is at byte `array`, and
/// the spans of its first elements, in order. The caller vouches that those bytes are exactly
/// the bytes of elements that parsed before (`prefix.rs` checks them against keyed hashes).
#[derive(Debug, Clone, Copy)]
pub struct Skip<'s> {
    pub array: usize,
    pub spans: &'s [(usize, usize)],
}

impl Skip<'_> {
    pub const NONE: Skip<'static> = Skip {
        array: usize::MAX,
        spans: &[],
    };
}

/// The element spans of an array that is a member of the root object: the byte offset of its
/// `[` and each element's `start..end`.
pub type TopArray = (usize, Vec<(usize, usize)>);

/// What [`parse_skipping`] returns besides the tree.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Elements left unparsed ([`Val::Known`]).
    pub skipped: usize,
    /// Element spans of the arrays that are members of the root object, in document order.
    pub top_arrays: Vec<TopArray>,
}

/// [`parse`], leaving the elements named by `skip` as [`Val::Known`] where the parse meets them
/// exactly at their spans (in order, from the first); skipping stops at the first element that
/// does not start where expected. Also records where the root object's arrays' elements lie.
pub fn parse_skipping(src: &str, skip: &Skip<'_>) -> Result<(Val, Parsed), JsonError> {
    let p = Parser {
        b: src.as_bytes(),
        i: 0,
        skip: *skip,
        skipped: 0,
        top: Some(Vec::new()),
    };
    let (v, p) = document(p)?;
    let parsed = Parsed {
        skipped: p.skipped,
        top_arrays: p.top.unwrap_or_default(),
    };
    Ok((v, parsed))
}

/// Parse the single value at `src[start..end]` with spans in `src`'s coordinates (a
/// [`Val::Known`] element, when what was remembered of it cannot be used).
pub fn parse_span(src: &str, start: usize, end: usize) -> Result<Val, JsonError> {
    let b = src.as_bytes().get(..end).ok_or(JsonError {
        offset: end,
        reason: "span past the end of the document",
    })?;
    let mut p = Parser {
        b,
        i: start,
        skip: Skip::NONE,
        skipped: 0,
        top: None,
    };
    let v = p.value(0)?;
    if p.i != end {
        return Err(p.err("trailing characters after the JSON value"));
    }
    Ok(v)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    skip: Skip<'a>,
    skipped: usize,
    /// Element spans of the root object's arrays, when asked for.
    top: Option<Vec<TopArray>>,
}

impl Parser<'_> {
    fn err(&self, reason: &'static str) -> JsonError {
        JsonError {
            offset: self.i,
            reason,
        }
    }
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                self.i += 1;
            } else {
                break;
            }
        }
    }
    fn value(&mut self, depth: u32) -> Result<Val, JsonError> {
        if depth >= MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        match self.b.get(self.i) {
            None => Err(self.err("unexpected end of input")),
            Some(b'"') => Ok(Val::Str(self.string()?)),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b't') => self.lit(b"true", Val::Bool(true)),
            Some(b'f') => self.lit(b"false", Val::Bool(false)),
            Some(b'n') => self.lit(b"null", Val::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("expected a JSON value")),
        }
    }
    fn lit(&mut self, word: &[u8], v: Val) -> Result<Val, JsonError> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("invalid literal"))
        }
    }
    fn digits(&mut self) -> usize {
        let s = self.i;
        while matches!(self.b.get(self.i), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - s
    }
    fn number(&mut self) -> Result<Val, JsonError> {
        let start = self.i;
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("invalid number")),
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
        }
        Ok(Val::Num(start, self.i))
    }
    fn string(&mut self) -> Result<Str, JsonError> {
        self.i += 1; // opening quote
        let start = self.i;
        let mut escaped = false;
        loop {
            self.i = find_special(self.b, self.i);
            match self.b.get(self.i) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    let end = self.i;
                    self.i += 1;
                    return Ok(Str {
                        start,
                        end,
                        escaped,
                    });
                }
                Some(b'\\') => {}
                Some(_) => return Err(self.err("control character in string")),
            }
            escaped = true;
            match self.b.get(self.i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                Some(b'u') => {
                    if hex4(self.b, self.i + 2).is_none() {
                        return Err(self.err("invalid \\u escape"));
                    }
                    self.i += 6;
                }
                _ => return Err(self.err("invalid escape")),
            }
        }
    }
    fn array(&mut self, depth: u32) -> Result<Val, JsonError> {
        // Only the array named by `skip` skips, and only once (its spans are used up here).
        let mut known: &[(usize, usize)] = &[];
        if self.i == self.skip.array {
            known = std::mem::take(&mut self.skip.spans);
        }
        let open = self.i;
        let mut spans = (depth == 1 && self.top.is_some()).then(Vec::new);
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            if let (Some(top), Some(sp)) = (self.top.as_mut(), spans) {
                top.push((open, sp));
            }
            return Ok(Val::Arr(items));
        }
        loop {
            self.ws();
            let at = self.i;
            match known.split_first() {
                Some((&(start, end), rest))
                    if start == self.i && end > start && end <= self.b.len() =>
                {
                    self.i = end;
                    self.skipped += 1;
                    known = rest;
                    items.push(Val::Known(start, end));
                }
                _ => {
                    known = &[];
                    items.push(self.value(depth + 1)?);
                }
            }
            if let Some(sp) = spans.as_mut() {
                sp.push((at, self.i));
            }
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    if let (Some(top), Some(sp)) = (self.top.as_mut(), spans) {
                        top.push((open, sp));
                    }
                    return Ok(Val::Arr(items));
                }
                _ => return Err(self.err("expected ',' or ']'")),
            }
        }
    }
    fn object(&mut self, depth: u32) -> Result<Val, JsonError> {
        self.i += 1;
        let mut members = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(Val::Obj(members));
        }
        loop {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return Err(self.err("expected a string key"));
            }
            let k = self.string()?;
            self.ws();
            if self.b.get(self.i) != Some(&b':') {
                return Err(self.err("expected ':'"));
            }
            self.i += 1;
            self.ws();
            let v = self.value(depth + 1)?;
            members.push((k, v));
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Val::Obj(members));
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-at-a-time searches against a bytewise search, with every pair of bytes that
    /// can trip the has-zero-byte borrow (a match followed by the byte one above it) at every
    /// offset of a buffer longer than two words.
    #[test]
    fn word_search_matches_bytewise() {
        let interesting = [
            b'"', b'#', b'\\', b']', 0x00, 0x01, 0x1f, 0x20, 0x21, b'a', 0x80, 0xff,
        ];
        for &x in &interesting {
            for &y in &interesting {
                for at in 0..20 {
                    let mut b = vec![b'a'; 20];
                    b[at] = x;
                    if at + 1 < b.len() {
                        b[at + 1] = y;
                    }
                    for from in 0..b.len() {
                        let naive = |p: fn(u8) -> bool| {
                            b[from..]
                                .iter()
                                .position(|&c| p(c))
                                .map_or(b.len(), |o| from + o)
                        };
                        assert_eq!(
                            find_special(&b, from),
                            naive(|c| c == b'"' || c == b'\\' || c < 0x20),
                            "{b:?} from {from}"
                        );
                        assert_eq!(find_backslash(&b, from), naive(|c| c == b'\\'));
                    }
                }
            }
        }
    }

    #[test]
    fn agrees_with_serde_on_validity() {
        let cases = [
            r#"{"a":[1,2.5,-0.1e+3,true,false,null,"x\"y\u00e9\ud83d\ude00"]}"#,
            r#"  [ ]  "#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":"\x"}"#,
            r#"{"a" 1}"#,
            r#"[1,]"#,
            r#"{"a":"b"} x"#,
            "\"a\u{1}\"",
            r#""\ud800""#,
            "",
        ];
        for c in cases {
            let ours = parse(c).is_ok();
            let theirs = serde_json::from_str::<serde::de::IgnoredAny>(c).is_ok();
            // serde rejects lone surrogates; we accept them (JSON.stringify emits them).
            if c == r#""\ud800""# {
                assert!(ours);
                continue;
            }
            assert_eq!(ours, theirs, "{c}");
        }
    }

    #[test]
    fn decode_and_map_offsets() {
        let src = r#""a\nb\u00e9c\ud83d\ude00d""#;
        let Val::Str(s) = parse(src).unwrap() else {
            panic!()
        };
        let d = s.decode(src);
        assert_eq!(d.text, "a\nb\u{e9}c\u{1f600}d");
        let text = d.text.to_string();
        let pos_d = text.find('d').unwrap();
        assert_eq!(&src[d.raw_offset(pos_d)..d.raw_offset(pos_d) + 1], "d");
        let pos_c = text.find('c').unwrap();
        assert_eq!(&src[d.raw_offset(pos_c)..d.raw_offset(pos_c) + 1], "c");
        assert_eq!(d.raw_offset(0), 1);
    }

    #[test]
    fn batched_offsets_match_single() {
        let src = r#""x\"y\n\u00e9\ud83d\ude00 tail \t end""#;
        let Val::Str(s) = parse(src).unwrap() else {
            panic!()
        };
        let d = s.decode(src);
        let bounds: Vec<usize> = (0..=d.text.len())
            .filter(|&i| d.text.is_char_boundary(i))
            .rev()
            .collect();
        let batch = d.raw_offsets(&bounds);
        for (i, &b) in bounds.iter().enumerate() {
            assert_eq!(batch[i], d.raw_offset(b));
        }
        // decoding the raw text between mapped offsets gives the decoded slice back
        let t = d.text.to_string();
        let (a, b) = (t.find('y').unwrap(), t.find(" end").unwrap());
        let raw = &src[d.raw_offset(a)..d.raw_offset(b)];
        let back: String = serde_json::from_str(&format!("\"{raw}\"")).unwrap();
        assert_eq!(back, &t[a..b]);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let s = "[".repeat(100_000);
        assert!(parse(&s).is_err());
    }

    #[test]
    fn escape_round_trips() {
        let s = "q\"b\\n\nt\t\u{1}é";
        let lit = format!("\"{}\"", escape(s));
        let back: String = serde_json::from_str(&lit).unwrap();
        assert_eq!(back, s);
    }
}
