//! Accumulates capabilities, hosts, decoded strings and findings across all files of a review,
//! with bounded evidence per item.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;

use regex::Regex;

use crate::engine::Scanner;
use crate::fold::base64_decode;
use crate::model::{Capability, Decoded, Evidence, Finding, Host, Severity, Stats};
use crate::rules::{HostClasses, ReviewRules};

/// Evidence kept per capability, host or finding.
pub const MAX_EVIDENCE: usize = 5;
/// Decoded strings kept in a report.
pub const MAX_DECODED: usize = 2000;
/// Findings with the same id kept per file.
pub const MAX_FINDINGS_PER_ID_FILE: usize = 25;
/// Snippet length in characters.
pub const SNIPPET_CHARS: usize = 160;
/// Decoded text shown, in characters.
pub const DECODED_CHARS: usize = 400;

static URL_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:https?|wss?|ftp)://(?:[^\s/@:]+(?::[^\s/@]*)?@)?(\[[0-9a-f:]+\]|[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?)")
        .expect("static regex")
});
static HOST_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?i)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,24})$")
        .expect("static regex")
});
static ZONE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:Africa|America|Antarctica|Asia|Atlantic|Australia|Europe|Indian|Pacific)/[A-Z][A-Za-z_+-]+").expect("static regex")
});
/// Top-level domains accepted for bare host names (URLs accept any).
const BARE_TLDS: &[&str] = &[
    "com", "net", "org", "io", "ai", "dev", "app", "co", "cn", "ru", "xyz", "info", "biz", "cloud",
    "tech", "us", "uk", "de", "jp", "fr", "in", "site", "online", "top", "pro", "gg", "ly", "tv",
    "cc", "live", "run", "ir", "kp", "su",
];

/// Where a string came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A string or template literal in parsed code.
    Literal,
    /// Recovered by evaluating an obfuscated expression or decoding a blob.
    Decoded,
    /// Extracted as printable text (unparseable file or binary).
    Extracted,
}

/// One file being analysed: its name, text and line index.
pub struct FileCtx<'s> {
    pub name: String,
    pub text: &'s str,
    line_starts: Vec<usize>,
}

impl<'s> FileCtx<'s> {
    pub fn new(name: String, text: &'s str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1));
        Self {
            name,
            text,
            line_starts,
        }
    }

    pub fn line_col(&self, off: usize) -> (u32, u32) {
        let off = off.min(self.text.len());
        let li = self
            .line_starts
            .partition_point(|&s| s <= off)
            .saturating_sub(1);
        let ls = self.line_starts[li];
        let mut b = off;
        while b > ls && !self.text.is_char_boundary(b) {
            b -= 1;
        }
        let col = self.text.get(ls..b).map(|s| s.chars().count()).unwrap_or(0);
        (li as u32 + 1, col as u32 + 1)
    }
}

/// Escape control, invisible and format characters so hidden text becomes visible.
pub fn escape_invisible(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let u = c as u32;
        let hidden = u < 0x20
            || (0x7f..=0xa0).contains(&u)
            || u == 0xad
            || u == 0x34f
            || u == 0x61c
            || (0x115f..=0x1160).contains(&u)
            || (0x17b4..=0x17b5).contains(&u)
            || (0x180b..=0x180f).contains(&u)
            || (0x2000..=0x200f).contains(&u)
            || (0x2028..=0x202f).contains(&u)
            || (0x205f..=0x206f).contains(&u)
            || u == 0x3000
            || u == 0x3164
            || (0xfe00..=0xfe0f).contains(&u)
            || u == 0xfeff
            || u == 0xffa0
            || (0xfff0..=0xffff).contains(&u)
            || (0xe0000..=0xe01ef).contains(&u);
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            _ if hidden => out.push_str(&format!("\\u{{{u:04X}}}")),
            _ => out.push(c),
        }
    }
    out
}

fn clip_chars(s: &str, n: usize) -> String {
    let mut it = s.chars();
    let head: String = it.by_ref().take(n).collect();
    if it.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

#[derive(Debug, Default)]
struct CapAcc {
    description: String,
    count: u64,
    evidence: Vec<Evidence>,
}

#[derive(Debug, Default)]
struct HostAcc {
    count: u64,
    only_decoded: bool,
    evidence: Vec<Evidence>,
}

/// Facts about one string, for the code-level detectors.
#[derive(Debug, Default)]
pub struct StringFacts {
    pub credential: bool,
    pub hosts: Vec<String>,
    pub zones: Vec<String>,
}

/// Everything found so far.
pub struct Collector {
    pub rules: ReviewRules,
    pub host_classes: HostClasses,
    pub scanner: Option<&'static Scanner>,
    caps: BTreeMap<String, CapAcc>,
    hosts: BTreeMap<String, HostAcc>,
    pub decoded: Vec<Decoded>,
    decoded_dropped: u64,
    pub findings: Vec<Finding>,
    finding_keys: HashSet<(String, String, usize)>,
    per_id_file: HashMap<(String, String), usize>,
    pub notes: Vec<String>,
    pub stats: Stats,
    /// Set while visiting the inside of an expression that was folded: its literals are parts
    /// of the decoded whole, not blobs of their own.
    pub in_fold: bool,
    decoded_seen: HashSet<(String, String)>,
}

impl Collector {
    pub fn new(
        rules: ReviewRules,
        host_classes: HostClasses,
        scanner: Option<&'static Scanner>,
    ) -> Self {
        Self {
            rules,
            host_classes,
            scanner,
            caps: BTreeMap::new(),
            hosts: BTreeMap::new(),
            decoded: Vec::new(),
            decoded_dropped: 0,
            findings: Vec::new(),
            finding_keys: HashSet::new(),
            per_id_file: HashMap::new(),
            notes: Vec::new(),
            stats: Stats::default(),
            in_fold: false,
            decoded_seen: HashSet::new(),
        }
    }

    /// A bounded, redacted, invisible-escaped excerpt around `[start, end)`.
    pub fn evidence(&self, ctx: &FileCtx<'_>, start: usize, end: usize) -> Evidence {
        let text = ctx.text;
        let start = start.min(text.len());
        let end = end.clamp(start, text.len());
        let mut a = start.saturating_sub(50);
        while a > 0 && !text.is_char_boundary(a) {
            a -= 1;
        }
        let mut b = (end.min(start + 200) + 50).min(text.len());
        while b < text.len() && !text.is_char_boundary(b) {
            b += 1;
        }
        let raw = text.get(a..b).unwrap_or("");
        let redacted = match &self.scanner {
            Some(s) => s.redact(raw),
            None => raw.to_string(),
        };
        let snippet = clip_chars(escape_invisible(&redacted).trim(), SNIPPET_CHARS);
        let (line, column) = ctx.line_col(start);
        Evidence {
            file: ctx.name.clone(),
            line,
            column,
            offset: start as u64,
            snippet,
        }
    }

    /// Record one use of a capability.
    pub fn cap(
        &mut self,
        id: &str,
        description: &str,
        ctx: &FileCtx<'_>,
        start: usize,
        end: usize,
    ) {
        let need = self
            .caps
            .get(id)
            .is_none_or(|c| c.evidence.len() < MAX_EVIDENCE);
        let ev = need.then(|| self.evidence(ctx, start, end));
        let c = self.caps.entry(id.to_string()).or_default();
        if c.description.is_empty() {
            c.description = description.to_string();
        }
        c.count += 1;
        if let Some(ev) = ev {
            c.evidence.push(ev);
        }
    }

    /// Record a host.
    pub fn host(&mut self, host: &str, ctx: &FileCtx<'_>, start: usize, end: usize, decoded: bool) {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.len() > 253 || host.is_empty() {
            return;
        }
        let need = self
            .hosts
            .get(&host)
            .is_none_or(|h| h.evidence.len() < MAX_EVIDENCE);
        let ev = need.then(|| self.evidence(ctx, start, end));
        let fresh = !self.hosts.contains_key(&host);
        let h = self.hosts.entry(host).or_default();
        if fresh {
            h.only_decoded = decoded;
        } else if !decoded {
            h.only_decoded = false;
        }
        h.count += 1;
        if let Some(ev) = ev {
            h.evidence.push(ev);
        }
    }

    /// Record a finding (deduplicated by id, file and offset; capped per id and file).
    pub fn finding(
        &mut self,
        id: &str,
        severity: Severity,
        title: &str,
        detail: String,
        evidence: Vec<Evidence>,
    ) {
        let (file, off) = evidence
            .first()
            .map(|e| (e.file.clone(), e.offset as usize))
            .unwrap_or_default();
        if !self
            .finding_keys
            .insert((id.to_string(), file.clone(), off))
        {
            return;
        }
        let n = self
            .per_id_file
            .entry((id.to_string(), file.clone()))
            .or_insert(0);
        *n += 1;
        if *n > MAX_FINDINGS_PER_ID_FILE {
            if *n == MAX_FINDINGS_PER_ID_FILE + 1 {
                self.notes.push(format!("{file}: more than {MAX_FINDINGS_PER_ID_FILE} `{id}` findings; the rest are not listed"));
            }
            return;
        }
        self.findings.push(Finding {
            id: id.to_string(),
            severity,
            title: title.to_string(),
            detail,
            evidence,
        });
    }

    /// Host names in a string: URLs anywhere; a bare host name when it is the whole string (or,
    /// for decoded text, any separated token).
    pub fn hosts_in(&self, value: &str, origin: Origin) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if value.len() < 4 {
            return out;
        }
        if value.contains("://") {
            for c in URL_RE.captures_iter(value).take(64) {
                if let Some(m) = c.get(1) {
                    let h = m
                        .as_str()
                        .trim_matches(|c| c == '[' || c == ']')
                        .to_ascii_lowercase();
                    if (h.contains('.') || h.contains(':') || h == "localhost") && !out.contains(&h)
                    {
                        out.push(h);
                    }
                }
            }
        }
        let bare = |t: &str| -> Option<String> {
            let t = t.trim().trim_end_matches('.');
            if t.len() > 253 || !t.contains('.') {
                return None;
            }
            let c = HOST_RE.captures(t)?;
            let tld = c.get(1)?.as_str().to_ascii_lowercase();
            BARE_TLDS
                .contains(&tld.as_str())
                .then(|| t.to_ascii_lowercase())
        };
        if origin == Origin::Decoded {
            for t in value.split(|c: char| {
                c.is_whitespace() || matches!(c, ',' | ';' | '|' | '"' | '\'' | '[' | ']')
            }) {
                if let Some(h) = bare(t)
                    && !out.contains(&h)
                {
                    out.push(h);
                }
                if out.len() > 256 {
                    break;
                }
            }
        } else if out.is_empty()
            && let Some(h) = bare(value)
        {
            out.push(h);
        }
        out
    }

    /// Analyse one string value located at `[start, end)` of `ctx`.
    pub fn on_string(
        &mut self,
        ctx: &FileCtx<'_>,
        value: &str,
        start: usize,
        end: usize,
        origin: Origin,
    ) -> StringFacts {
        let mut facts = StringFacts::default();
        if value.len() < 3 {
            return facts;
        }
        let caps: Vec<(String, String)> = self
            .rules
            .string_capabilities(value)
            .into_iter()
            .map(|c| {
                (
                    c.to_string(),
                    self.rules.descriptions.get(c).cloned().unwrap_or_default(),
                )
            })
            .collect();
        for (c, d) in caps {
            if c.starts_with("credentials.") {
                facts.credential = true;
            }
            self.cap(&c, &d, ctx, start, end);
        }
        facts.hosts = self.hosts_in(value, origin);
        for h in &facts.hosts {
            self.host(h, ctx, start, end, origin == Origin::Decoded);
        }
        if origin == Origin::Decoded {
            facts.zones = ZONE_RE
                .find_iter(value)
                .take(64)
                .map(|m| m.as_str().to_string())
                .collect();
        }
        match origin {
            Origin::Literal => {
                if !self.in_fold {
                    self.literal_blob(ctx, value, start, end);
                }
                // Escaped invisible characters are not in the raw source the file scan sees.
                let raw_ascii = ctx.text.get(start..end).is_some_and(|r| r.is_ascii());
                if raw_ascii && !value.is_ascii() {
                    self.engine_hits(ctx, value, start, end, true);
                }
            }
            Origin::Decoded => self.engine_hits(ctx, value, start, end, false),
            Origin::Extracted => {}
        }
        facts
    }

    /// Run the engine on a string value; hits are located at the string's position.
    fn engine_hits(
        &mut self,
        ctx: &FileCtx<'_>,
        value: &str,
        start: usize,
        end: usize,
        covert_only: bool,
    ) {
        let Some(s) = &self.scanner else { return };
        let hits = s.scan(value);
        for h in hits {
            if covert_only && h.category != "covert" {
                continue;
            }
            let ev = self.evidence(ctx, start, end);
            let mut h = h;
            // Written as visible escapes (`\u200B`) in the source: only a run of them (data
            // smuggling) or tag characters stay serious; a lone escape is usually a table entry.
            let invisible = value
                .chars()
                .filter(|c| crate::lookalike::canonical(*c).is_none())
                .count();
            if covert_only && invisible < 4 && !h.rule_id.contains("tag") {
                h.severity = h.severity.min(Severity::Low);
            }
            self.engine_finding(&h, ev, true);
        }
    }

    /// Turn an engine hit into a review finding.
    pub fn engine_finding(&mut self, h: &crate::engine::Hit, ev: Evidence, in_value: bool) {
        let (id, title, severity) = if h.category == "secret" {
            (
                format!("secret.{}", h.rule_id),
                format!("Embedded secret ({})", h.rule_id),
                h.severity.max(Severity::High),
            )
        } else {
            (
                format!("hidden_text.{}", h.rule_id),
                format!("Hidden or look-alike Unicode ({})", h.rule_id),
                h.severity,
            )
        };
        let mut detail = format!(
            "{}: {}",
            if in_value {
                "in a string value"
            } else {
                "in the source text"
            },
            h.preview
        );
        if let Some(d) = &h.detail {
            detail.push_str(&format!(
                "; decoded: {}",
                clip_chars(&escape_invisible(d), DECODED_CHARS)
            ));
        }
        self.finding(&id, severity, &title, detail, vec![ev]);
    }

    /// A literal that is itself a base64 or hex blob of printable text.
    fn literal_blob(&mut self, ctx: &FileCtx<'_>, value: &str, start: usize, end: usize) {
        let v = value.trim();
        if v.len() < 24 || v.len() > (1 << 20) {
            return;
        }
        let (bytes, method) =
            if v.len().is_multiple_of(2) && v.bytes().all(|b| b.is_ascii_hexdigit()) {
                (hex::decode(v).ok(), "hex literal")
            } else if v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'))
                && v.bytes()
                    .any(|b| b.is_ascii_digit() || b == b'+' || b == b'/' || b == b'=')
                && v.bytes().any(|b| b.is_ascii_uppercase())
                && v.bytes().any(|b| b.is_ascii_lowercase())
            {
                (base64_decode(v), "base64 literal")
            } else {
                return;
            };
        let Some(bytes) = bytes else { return };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return;
        };
        if !is_printable_text(text) {
            return;
        }
        self.on_decoded(ctx, text, method, false, start, end);
    }

    /// A decoded string: record it, analyse it, and judge what it hides.
    pub fn on_decoded(
        &mut self,
        ctx: &FileCtx<'_>,
        text: &str,
        method: &str,
        strong: bool,
        start: usize,
        end: usize,
    ) {
        if !self
            .decoded_seen
            .insert((ctx.name.clone(), text.to_string()))
        {
            return;
        }
        let ev = self.evidence(ctx, start, end);
        let shown = clip_chars(
            &escape_invisible(&match &self.scanner {
                Some(s) => s.redact(text),
                None => text.to_string(),
            }),
            DECODED_CHARS,
        );
        if self.decoded.len() < MAX_DECODED {
            self.decoded.push(Decoded {
                method: method.to_string(),
                text: shown.clone(),
                evidence: ev.clone(),
            });
        } else {
            self.decoded_dropped += 1;
        }
        let facts = self.on_string(ctx, text, start, end, Origin::Decoded);
        if !facts.hosts.is_empty() {
            let list = facts
                .hosts
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if strong {
                self.finding(
                    "obfuscation.decoded_hosts",
                    Severity::High,
                    "Obfuscated host list decoded",
                    format!("{method} hides {} host(s): {list}", facts.hosts.len()),
                    vec![ev.clone()],
                );
            } else {
                self.finding(
                    "obfuscation.encoded_hosts",
                    Severity::Medium,
                    "Encoded host names",
                    format!("{method} contains {} host(s): {list}", facts.hosts.len()),
                    vec![ev.clone()],
                );
            }
        }
        if facts.zones.len() >= 2 || (strong && !facts.zones.is_empty()) {
            self.finding(
                "obfuscation.decoded_fingerprint_list",
                Severity::High,
                "Obfuscated environment-fingerprint list decoded",
                format!(
                    "{method} hides time-zone names: {}",
                    facts
                        .zones
                        .iter()
                        .take(20)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                vec![ev],
            );
        }
    }

    pub fn finish_stats(&mut self) {
        if self.decoded_dropped > 0 {
            self.notes.push(format!(
                "{} more decoded strings were not listed",
                self.decoded_dropped
            ));
        }
    }

    pub fn take_capabilities(&mut self) -> Vec<Capability> {
        std::mem::take(&mut self.caps)
            .into_iter()
            .map(|(id, c)| Capability {
                id,
                description: c.description,
                count: c.count,
                evidence: c.evidence,
            })
            .collect()
    }

    pub fn take_hosts(&mut self) -> Vec<Host> {
        let mut v: Vec<Host> = std::mem::take(&mut self.hosts)
            .into_iter()
            .map(|(host, h)| {
                let (class, owner) = self.host_classes.classify(&host);
                Host {
                    host,
                    class,
                    owner,
                    count: h.count,
                    only_decoded: h.only_decoded,
                    evidence: h.evidence,
                }
            })
            .collect();
        v.sort_by(|a, b| a.class.cmp(&b.class).then(a.host.cmp(&b.host)));
        v
    }
}

/// Mostly printable text of a useful length.
pub fn is_printable_text(s: &str) -> bool {
    let n = s.chars().count();
    if n < 6 {
        return false;
    }
    let good = s
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t' | '\r'))
        .filter(|c| *c != '\u{fffd}')
        .count();
    good * 100 >= n * 95
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col() -> Collector {
        Collector::new(
            ReviewRules::builtin().unwrap(),
            HostClasses::builtin().unwrap(),
            None,
        )
    }

    #[test]
    fn hosts_from_urls_and_bare_names() {
        let c = col();
        assert_eq!(
            c.hosts_in(
                "see https://API.example.net:8443/x and http://u:p@h.io/",
                Origin::Literal
            ),
            vec!["api.example.net", "h.io"]
        );
        assert_eq!(
            c.hosts_in("api.anthropic.com", Origin::Literal),
            vec!["api.anthropic.com"]
        );
        assert!(c.hosts_in("index.js", Origin::Literal).is_empty());
        assert!(c.hosts_in("lodash.merge", Origin::Literal).is_empty());
        assert_eq!(
            c.hosts_in("a.evil.cn,b.evil.ru", Origin::Decoded),
            vec!["a.evil.cn", "b.evil.ru"]
        );
    }

    #[test]
    fn line_and_column() {
        let ctx = FileCtx::new("f".into(), "ab\ncé\nx");
        assert_eq!(ctx.line_col(0), (1, 1));
        assert_eq!(ctx.line_col(3), (2, 1));
        assert_eq!(ctx.line_col(6), (2, 3));
        assert_eq!(ctx.line_col(7), (3, 1));
    }

    #[test]
    fn invisible_is_escaped() {
        assert_eq!(
            escape_invisible("a\u{200b}b\u{e0041}"),
            "a\\u{200B}b\\u{E0041}"
        );
    }
}
