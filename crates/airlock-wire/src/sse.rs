//! Server-sent events: splitting, and restoring placeholders in a live stream.
//!
//! [`StreamRestorer`] is fed upstream bytes as they arrive (split anywhere, even inside an event
//! or a UTF-8 sequence) and returns the bytes to send to the client. Complete events without
//! anything to restore are passed through byte for byte. In text and tool-argument deltas a
//! placeholder may be split across several events: only the suffix that could start one (`[`,
//! `[RED`, `[REDACTED_GITH`...) is held back, and it is prepended to the next delta of the same
//! content block, or sent as a delta of its own when the block ends.

use crate::Api;
use crate::json::{self, Edit, Val};
use crate::restore::{holdback_start, restore_text, restore_val};
use crate::usage::{Usage, UsageAccumulator};
use crate::vault::{PLACEHOLDER_PREFIX, VaultScope};

/// Events larger than this are passed through unrestored rather than buffered further.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 << 20;

/// One parsed SSE event (for tests and tools; the restorer works on raw bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Split a complete SSE byte stream into events (`data` lines joined with `\n`). Events without
/// data are skipped.
pub fn parse_sse(stream: &[u8]) -> Vec<SseEvent> {
    split_events(stream)
        .into_iter()
        .map(|e| SseEvent {
            event: e.name.map(str::to_owned),
            data: e.data,
        })
        .collect()
}

pub(crate) struct RawEvent<'a> {
    pub name: Option<&'a str>,
    pub data: String,
}

/// Lines of `text` with their terminators (`\r\n`, `\n` or `\r`; empty at the very end).
fn lines(text: &str) -> impl Iterator<Item = (&str, &str)> {
    let b = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= b.len() {
            return None;
        }
        let start = i;
        match memchr::memchr2(b'\n', b'\r', &b[i..]) {
            None => {
                i = b.len();
                Some((&text[start..], ""))
            }
            Some(off) => {
                let eol = i + off;
                let tl = if b[eol] == b'\r' && b.get(eol + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                i = eol + tl;
                Some((&text[start..eol], &text[eol..eol + tl]))
            }
        }
    })
}

fn field(line: &str) -> (&str, &str) {
    match line.find(':') {
        Some(p) => {
            let v = &line[p + 1..];
            (&line[..p], v.strip_prefix(' ').unwrap_or(v))
        }
        None => (line, ""),
    }
}

/// Fields of one event's text.
fn parse_event(text: &str) -> (Option<&str>, Option<String>, &'static str) {
    let mut name = None;
    let mut data: Option<String> = None;
    let mut eol = "\n";
    let mut first = true;
    for (line, t) in lines(text) {
        if first && !t.is_empty() {
            eol = if t == "\r\n" {
                "\r\n"
            } else if t == "\r" {
                "\r"
            } else {
                "\n"
            };
            first = false;
        }
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        match field(line) {
            ("event", v) => name = Some(v),
            ("data", v) => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(v);
                }
                None => data = Some(v.to_owned()),
            },
            _ => {}
        }
    }
    (name, data, eol)
}

pub(crate) fn split_events(stream: &[u8]) -> Vec<RawEvent<'_>> {
    let text = match std::str::from_utf8(stream) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&stream[..e.valid_up_to()]).unwrap_or(""),
    };
    let mut out = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    for (line, t) in lines(text) {
        pos += line.len() + t.len();
        if line.is_empty() {
            let (name, data, _) = parse_event(&text[start..pos]);
            if let Some(data) = data {
                out.push(RawEvent { name, data });
            }
            start = pos;
        }
    }
    if start < text.len() {
        let (name, data, _) = parse_event(&text[start..]);
        if let Some(data) = data {
            out.push(RawEvent { name, data });
        }
    }
    out
}

enum Synth {
    Anthropic {
        index: String,
        json: bool,
    },
    Chat {
        envelope: String,
        choice: String,
        tool: Option<String>,
        field: &'static str,
    },
    Responses {
        event: String,
        data: String,
        start: usize,
        end: usize,
    },
    Gemini {
        candidate: String,
    },
}

struct Pending {
    key: String,
    hold: String,
    synth: Synth,
}

/// Counters of one stream (safe to log).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub events: u64,
    pub rewritten: u64,
    pub synthesized: u64,
    pub oversize: u64,
    /// Bytes searched for line ends (about the stream's length, however it is cut).
    pub searched: u64,
}

/// Restores placeholders in an upstream SSE stream of `api`; also collects token usage.
pub struct StreamRestorer {
    api: Api,
    scope: VaultScope,
    buf: Vec<u8>,
    line_start: usize,
    /// How far the buffer was searched for an end of line: a long line arriving in small
    /// pieces is searched once, not once per piece (that was quadratic in the line's length).
    scanned: usize,
    oversize: bool,
    max_event: usize,
    pending: Vec<Pending>,
    usage: UsageAccumulator,
    eol: &'static str,
    stats: StreamStats,
}

impl std::fmt::Debug for StreamRestorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRestorer")
            .field("api", &self.api)
            .field("buffered", &self.buf.len())
            .field("pending", &self.pending.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl StreamRestorer {
    pub fn new(api: Api, scope: VaultScope) -> Self {
        StreamRestorer {
            api,
            scope,
            buf: Vec::new(),
            line_start: 0,
            scanned: 0,
            oversize: false,
            max_event: DEFAULT_MAX_EVENT_BYTES,
            pending: Vec::new(),
            usage: UsageAccumulator::new(),
            eol: "\n",
            stats: StreamStats::default(),
        }
    }

    pub fn with_max_event_bytes(mut self, n: usize) -> Self {
        self.max_event = n.max(1024);
        self
    }

    pub fn usage(&self) -> Usage {
        self.usage.usage()
    }

    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Feed upstream bytes; returns what can be sent to the client now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.push_into(chunk, &mut out);
        out
    }

    /// Like [`push`](Self::push), appending to `out`.
    pub fn push_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.buf.extend_from_slice(chunk);
        let buf = std::mem::take(&mut self.buf);
        let mut consumed = 0;
        loop {
            let from = self.line_start.max(self.scanned);
            let found = memchr::memchr2(b'\n', b'\r', &buf[from..]);
            self.stats.searched += found.map_or(buf.len() - from, |o| o + 1) as u64;
            let Some(off) = found else {
                self.scanned = buf.len();
                break;
            };
            let eol = from + off;
            let tl = if buf[eol] == b'\r' {
                match buf.get(eol + 1) {
                    None => {
                        // Might be the first half of "\r\n": looked at again with more bytes.
                        self.scanned = eol;
                        break;
                    }
                    Some(b'\n') => 2,
                    Some(_) => 1,
                }
            } else {
                1
            };
            let empty = eol == self.line_start;
            self.line_start = eol + tl;
            if self.oversize {
                out.extend_from_slice(&buf[consumed..self.line_start]);
                consumed = self.line_start;
                if empty {
                    self.oversize = false;
                }
                continue;
            }
            if empty {
                self.handle_event(&buf[consumed..self.line_start], out);
                consumed = self.line_start;
            }
        }
        if !self.oversize && buf.len() - consumed > self.max_event {
            // Give up on this event: pass it through unrestored, and the rest of it as it comes.
            self.stats.oversize += 1;
            tracing::warn!(
                limit = self.max_event,
                "oversized SSE event passed through without restoration"
            );
            self.oversize = true;
        }
        if self.oversize {
            // Everything buffered goes out now (but a final '\r' may be half of "\r\n").
            let end = if buf.last() == Some(&b'\r') {
                buf.len() - 1
            } else {
                buf.len()
            };
            if end > consumed {
                out.extend_from_slice(&buf[consumed..end]);
                consumed = end;
                self.line_start = self.line_start.max(end);
            }
        }
        let mut buf = buf;
        buf.drain(..consumed);
        self.line_start -= consumed;
        self.scanned = self.scanned.saturating_sub(consumed);
        self.buf = buf;
    }

    /// The upstream ended: returns the rest (an unterminated last event, held-back text).
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.buf);
        self.line_start = 0;
        self.scanned = 0;
        if !rest.is_empty() {
            if self.oversize {
                out.extend_from_slice(&rest);
            } else {
                self.handle_event(&rest, &mut out);
            }
        }
        self.flush(&mut out, |_| true);
        out
    }

    fn handle_event(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        self.stats.events += 1;
        let Ok(text) = std::str::from_utf8(raw) else {
            out.extend_from_slice(raw);
            return;
        };
        let (name, data, eol) = parse_event(text);
        self.eol = eol;
        let Some(data) = data else {
            out.extend_from_slice(raw);
            return;
        };
        self.usage.feed_json(data.as_bytes());
        if self.scope.is_empty() && self.pending.is_empty() {
            out.extend_from_slice(raw);
            return;
        }
        let new = match self.api {
            Api::AnthropicMessages | Api::AnthropicCountTokens => self.anthropic(&data, out),
            Api::OpenAiChat => self.chat(&data, out),
            Api::OpenAiResponses => self.responses(name, &data, out),
            Api::GeminiGenerateContent => self.gemini(&data, out),
        };
        match new {
            None => out.extend_from_slice(raw),
            Some(nd) => {
                self.stats.rewritten += 1;
                let mut wrote_data = false;
                for (line, t) in lines(text) {
                    if line.is_empty() {
                        continue;
                    }
                    if field(line).0 == "data" && !line.starts_with(':') {
                        if !wrote_data {
                            for l in nd.split('\n') {
                                out.extend_from_slice(b"data: ");
                                out.extend_from_slice(l.as_bytes());
                                out.extend_from_slice(eol.as_bytes());
                            }
                            wrote_data = true;
                        }
                        continue;
                    }
                    out.extend_from_slice(line.as_bytes());
                    out.extend_from_slice(if t.is_empty() { eol } else { t }.as_bytes());
                }
                out.extend_from_slice(eol.as_bytes());
            }
        }
    }

    /// Combine held-back text with a new delta; returns the delta text to send if it differs.
    fn delta(
        &mut self,
        key: String,
        text: &str,
        json_inner: bool,
        last: bool,
        synth: impl FnOnce() -> Synth,
    ) -> Option<String> {
        let prev = match self.pending.iter().position(|p| p.key == key) {
            Some(i) => self.pending.remove(i).hold,
            None => String::new(),
        };
        if prev.is_empty() && !text.contains('[') {
            return None;
        }
        let mut s = prev;
        let had_prev = !s.is_empty();
        s.push_str(text);
        let cut = if last {
            s.len()
        } else {
            holdback_start(&s).unwrap_or(s.len())
        };
        let hold = s.split_off(cut);
        let restored = restore_text(&s, &self.scope, json_inner);
        let changed =
            had_prev || !hold.is_empty() || matches!(restored, std::borrow::Cow::Owned(_));
        let result = changed.then(|| restored.into_owned());
        if !hold.is_empty() {
            self.pending.push(Pending {
                key,
                hold,
                synth: synth(),
            });
        }
        result
    }

    /// Send held-back text of the pending entries selected by `which` as deltas of their own.
    fn flush(&mut self, out: &mut Vec<u8>, which: impl Fn(&str) -> bool) {
        let eol = self.eol;
        let mut keep = Vec::new();
        for p in std::mem::take(&mut self.pending) {
            if !which(&p.key) {
                keep.push(p);
                continue;
            }
            self.stats.synthesized += 1;
            let esc = json::escape(&p.hold);
            let (event, data) = match p.synth {
                Synth::Anthropic { index, json } => {
                    let d = if json {
                        format!(
                            r#"{{"type":"content_block_delta","index":{index},"delta":{{"type":"input_json_delta","partial_json":"{esc}"}}}}"#
                        )
                    } else {
                        format!(
                            r#"{{"type":"content_block_delta","index":{index},"delta":{{"type":"text_delta","text":"{esc}"}}}}"#
                        )
                    };
                    (Some("content_block_delta".to_owned()), d)
                }
                Synth::Chat {
                    envelope,
                    choice,
                    tool,
                    field,
                } => {
                    let delta = match tool {
                        Some(ti) => format!(
                            r#"{{"tool_calls":[{{"index":{ti},"function":{{"arguments":"{esc}"}}}}]}}"#
                        ),
                        None => format!(r#"{{"{field}":"{esc}"}}"#),
                    };
                    (
                        None,
                        format!(
                            r#"{{{envelope}"choices":[{{"index":{choice},"delta":{delta},"finish_reason":null}}]}}"#
                        ),
                    )
                }
                Synth::Responses {
                    event,
                    data,
                    start,
                    end,
                } => {
                    let d = format!("{}{}{}", &data[..start], esc, &data[end..]);
                    (Some(event), d)
                }
                Synth::Gemini { candidate } => (
                    None,
                    format!(
                        r#"{{"candidates":[{{"content":{{"parts":[{{"text":"{esc}"}}],"role":"model"}},"index":{candidate}}}]}}"#
                    ),
                ),
            };
            if let Some(e) = event {
                out.extend_from_slice(b"event: ");
                out.extend_from_slice(e.as_bytes());
                out.extend_from_slice(eol.as_bytes());
            }
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(data.as_bytes());
            out.extend_from_slice(eol.as_bytes());
            out.extend_from_slice(eol.as_bytes());
        }
        self.pending = keep;
    }

    /// Restore in any string of an event that is not a tracked delta.
    fn restore_whole(&self, data: &str, root: &Val) -> Option<String> {
        if !data.contains(PLACEHOLDER_PREFIX) {
            return None;
        }
        let mut edits = Vec::new();
        restore_val(data, root, &self.scope, false, &mut edits);
        (!edits.is_empty()).then(|| json::apply_edits(data, &mut edits))
    }

    fn anthropic(&mut self, data: &str, out: &mut Vec<u8>) -> Option<String> {
        let root = json::parse(data).ok()?;
        let ty = root.get_str(data, "type")?;
        if ty == "content_block_delta" {
            let index = root
                .get(data, "index")
                .and_then(|v| v.raw(data))
                .unwrap_or("0")
                .to_owned();
            let delta = root.get(data, "delta")?;
            let (fname, json_inner) = match delta.get_str(data, "type")?.as_ref() {
                "text_delta" => ("text", false),
                "input_json_delta" => ("partial_json", true),
                _ => return None,
            };
            let s = *delta.get(data, fname)?.as_str()?;
            let text = s.decode(data).text;
            let idx2 = index.clone();
            let new = self.delta(format!("a{index}"), &text, json_inner, false, move || {
                Synth::Anthropic {
                    index: idx2,
                    json: json_inner,
                }
            })?;
            let mut e = [Edit {
                start: s.start,
                end: s.end,
                text: json::escape(&new),
            }];
            return Some(json::apply_edits(data, &mut e));
        }
        match &*ty {
            "content_block_stop" => {
                let key = format!(
                    "a{}",
                    root.get(data, "index")
                        .and_then(|v| v.raw(data))
                        .unwrap_or("0")
                );
                self.flush(out, |k| k == key);
            }
            "message_delta" | "message_stop" | "error" => self.flush(out, |_| true),
            _ => {}
        }
        self.restore_whole(data, &root)
    }

    fn chat(&mut self, data: &str, out: &mut Vec<u8>) -> Option<String> {
        if data.trim() == "[DONE]" {
            self.flush(out, |_| true);
            return None;
        }
        let root = json::parse(data).ok()?;
        let Some(Val::Arr(choices)) = root.get(data, "choices") else {
            return self.restore_whole(data, &root);
        };
        let mut envelope = String::new();
        for k in ["id", "object", "created", "model", "system_fingerprint"] {
            if let Some(raw) = root.get(data, k).and_then(|v| v.raw(data)) {
                envelope.push_str(&format!("\"{k}\":{raw},"));
            }
        }
        let mut edits = Vec::new();
        for ch in choices {
            let ci = ch
                .get(data, "index")
                .and_then(|v| v.raw(data))
                .unwrap_or("0")
                .to_owned();
            let last = matches!(ch.get(data, "finish_reason"), Some(v) if !matches!(v, Val::Null));
            let prefix = format!("c{ci}/");
            if last {
                self.flush(out, |k| k.starts_with(&prefix));
            }
            let Some(delta) = ch.get(data, "delta") else {
                continue;
            };
            for fname in ["content", "reasoning_content"] {
                if let Some(Val::Str(s)) = delta.get(data, fname) {
                    let text = s.decode(data).text;
                    let (env, c) = (envelope.clone(), ci.clone());
                    if let Some(new) =
                        self.delta(format!("{prefix}{fname}"), &text, false, last, move || {
                            Synth::Chat {
                                envelope: env,
                                choice: c,
                                tool: None,
                                field: fname,
                            }
                        })
                    {
                        edits.push(Edit {
                            start: s.start,
                            end: s.end,
                            text: json::escape(&new),
                        });
                    }
                }
            }
            if let Some(Val::Arr(calls)) = delta.get(data, "tool_calls") {
                for tc in calls {
                    let ti = tc
                        .get(data, "index")
                        .and_then(|v| v.raw(data))
                        .unwrap_or("0")
                        .to_owned();
                    let Some(Val::Str(s)) = tc
                        .get(data, "function")
                        .and_then(|f| f.get(data, "arguments"))
                    else {
                        continue;
                    };
                    let text = s.decode(data).text;
                    let (env, c, t) = (envelope.clone(), ci.clone(), ti.clone());
                    if let Some(new) =
                        self.delta(format!("{prefix}t{ti}"), &text, true, last, move || {
                            Synth::Chat {
                                envelope: env,
                                choice: c,
                                tool: Some(t),
                                field: "arguments",
                            }
                        })
                    {
                        edits.push(Edit {
                            start: s.start,
                            end: s.end,
                            text: json::escape(&new),
                        });
                    }
                }
            }
        }
        (!edits.is_empty()).then(|| json::apply_edits(data, &mut edits))
    }

    /// A Gemini stream (`:streamGenerateContent?alt=sse`): each event a whole
    /// `GenerateContentResponse` whose candidates' text parts are deltas. Text is restored as a
    /// delta (a placeholder split across events is held back, only the bytes that could start
    /// one); other parts (function calls, which arrive whole) are restored in place, after the
    /// candidate's held text is sent. Thought parts are left as they are, as thinking blocks are.
    fn gemini(&mut self, data: &str, out: &mut Vec<u8>) -> Option<String> {
        let root = json::parse(data).ok()?;
        let Some(Val::Arr(cands)) = root.get(data, "candidates") else {
            return self.restore_whole(data, &root);
        };
        let mut edits = Vec::new();
        for c in cands {
            let ci = c
                .get(data, "index")
                .and_then(|v| v.raw(data))
                .unwrap_or("0")
                .to_owned();
            let prefix = format!("g{ci}/");
            let last = matches!(c.get(data, "finishReason"), Some(v) if !matches!(v, Val::Null));
            let parts = match c.get(data, "content").and_then(|ct| ct.get(data, "parts")) {
                Some(Val::Arr(parts)) => parts.as_slice(),
                _ => &[],
            };
            let shown: Vec<&Val> = parts
                .iter()
                .filter(|p| !matches!(p.get(data, "thought"), Some(Val::Bool(true))))
                .collect();
            let is_text = |p: &&Val| matches!(p.get(data, "text"), Some(Val::Str(_)));
            let text = shown.iter().any(is_text);
            let other = !shown.iter().all(is_text);
            // Held text goes first: joined to this event's text when it has some (so a
            // placeholder split across the two is restored), else as an event of its own.
            if (last || other) && !text {
                self.flush(out, |k| k.starts_with(&prefix));
            }
            for p in shown {
                if let Some(Val::Str(s)) = p.get(data, "text") {
                    let text = s.decode(data).text;
                    let candidate = ci.clone();
                    let key = format!("{prefix}text");
                    if let Some(new) =
                        self.delta(key, &text, false, last, move || Synth::Gemini { candidate })
                    {
                        edits.push(Edit {
                            start: s.start,
                            end: s.end,
                            text: json::escape(&new),
                        });
                    }
                } else if data.contains(PLACEHOLDER_PREFIX) {
                    restore_val(data, p, &self.scope, false, &mut edits);
                }
            }
        }
        (!edits.is_empty()).then(|| json::apply_edits(data, &mut edits))
    }

    fn responses(&mut self, name: Option<&str>, data: &str, out: &mut Vec<u8>) -> Option<String> {
        let root = json::parse(data).ok()?;
        let ty = root.get_str(data, "type")?.into_owned();
        if ty.ends_with(".delta") && !ty.contains("reasoning") {
            let s = *root.get(data, "delta")?.as_str()?;
            let json_inner = ty.contains("arguments");
            let mut key = ty.clone();
            for k in ["item_id", "output_index", "content_index"] {
                key.push('|');
                key.push_str(root.get(data, k).and_then(|v| v.raw(data)).unwrap_or(""));
            }
            let text = s.decode(data).text;
            let event = name.unwrap_or(&ty).to_owned();
            let tpl = data.to_owned();
            let new = self.delta(key, &text, json_inner, false, move || Synth::Responses {
                event,
                data: tpl,
                start: s.start,
                end: s.end,
            })?;
            let mut e = [Edit {
                start: s.start,
                end: s.end,
                text: json::escape(&new),
            }];
            return Some(json::apply_edits(data, &mut e));
        }
        if ty.ends_with(".done")
            || ty.starts_with("response.completed")
            || ty.starts_with("response.failed")
            || ty.starts_with("response.incomplete")
            || ty == "error"
        {
            self.flush(out, |_| true);
        }
        self.restore_whole(data, &root)
    }
}
