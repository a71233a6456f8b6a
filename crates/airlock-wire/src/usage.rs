//! Token usage from responses and streams of each API (for metrics and the audit log).

use serde::{Deserialize, Serialize};

/// Token counts as reported by the upstream. `None` when the upstream did not say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// Prompt tokens served from the provider's cache.
    pub cache_read_tokens: Option<u64>,
    /// Prompt tokens written to the provider's cache (Anthropic).
    pub cache_creation_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct Details {
    cached_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
}

/// The union of the three APIs' usage objects.
#[derive(Deserialize, Default)]
struct RawUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    input_tokens_details: Option<Details>,
    prompt_tokens_details: Option<Details>,
    output_tokens_details: Option<Details>,
    completion_tokens_details: Option<Details>,
}

#[derive(Deserialize)]
struct Inner {
    usage: Option<RawUsage>,
}

/// Gemini's `usageMetadata` (`generateContent`, and each `streamGenerateContent` chunk with
/// running totals). `promptTokenCount` includes the cached tokens; `candidatesTokenCount`
/// excludes the thinking tokens, which are billed as output.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GeminiUsage {
    prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    cached_content_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
}

impl From<GeminiUsage> for RawUsage {
    fn from(g: GeminiUsage) -> RawUsage {
        let output = match (g.candidates_token_count, g.thoughts_token_count) {
            (None, None) => None,
            (c, t) => Some(c.unwrap_or(0).saturating_add(t.unwrap_or(0))),
        };
        RawUsage {
            prompt_tokens: g.prompt_token_count,
            completion_tokens: output,
            prompt_tokens_details: Some(Details {
                cached_tokens: g.cached_content_token_count,
                reasoning_tokens: None,
            }),
            completion_tokens_details: Some(Details {
                cached_tokens: None,
                reasoning_tokens: g.thoughts_token_count,
            }),
            ..RawUsage::default()
        }
    }
}

/// Top-level `usage` (JSON responses, Chat final chunk, Anthropic `message_delta`),
/// `message.usage` (Anthropic `message_start`), `response.usage` (Responses
/// `response.completed`) or `usageMetadata` (Gemini).
#[derive(Deserialize)]
struct Envelope {
    usage: Option<RawUsage>,
    message: Option<Inner>,
    response: Option<Inner>,
    #[serde(rename = "usageMetadata")]
    usage_metadata: Option<GeminiUsage>,
}

impl Usage {
    fn merge(&mut self, r: RawUsage) {
        fn set(slot: &mut Option<u64>, v: Option<u64>) {
            if v.is_some() {
                *slot = v;
            }
        }
        set(&mut self.input_tokens, r.input_tokens.or(r.prompt_tokens));
        set(
            &mut self.output_tokens,
            r.output_tokens.or(r.completion_tokens),
        );
        set(
            &mut self.cache_read_tokens,
            r.cache_read_input_tokens
                .or(r.input_tokens_details.and_then(|d| d.cached_tokens))
                .or(r.prompt_tokens_details.and_then(|d| d.cached_tokens)),
        );
        set(
            &mut self.cache_creation_tokens,
            r.cache_creation_input_tokens,
        );
        set(
            &mut self.reasoning_tokens,
            r.output_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .or(r.completion_tokens_details.and_then(|d| d.reasoning_tokens)),
        );
    }

    /// Usage from a complete JSON response body of any of the APIs.
    pub fn from_json(body: &[u8]) -> Usage {
        let mut acc = UsageAccumulator::default();
        acc.feed_json(body);
        acc.usage()
    }

    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }
}

/// Collects usage over the events of a stream (later values win: Anthropic's `message_delta`
/// carries the final output count).
#[derive(Debug, Clone, Default)]
pub struct UsageAccumulator {
    usage: Usage,
}

impl UsageAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one JSON document: a whole response body or one SSE event's `data`.
    /// Anything that is not JSON or carries no usage is ignored.
    pub fn feed_json(&mut self, data: &[u8]) {
        // `"usage"` or Gemini's `"usageMetadata"`.
        if memchr::memmem::find(data, b"\"usage").is_none() {
            return;
        }
        // Gemini's `streamGenerateContent` without `alt=sse` answers one JSON array of chunks.
        let envelopes = match data.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => serde_json::from_slice::<Vec<Envelope>>(data).unwrap_or_default(),
            _ => serde_json::from_slice::<Envelope>(data)
                .map(|e| vec![e])
                .unwrap_or_default(),
        };
        for env in envelopes {
            for u in [
                env.usage,
                env.message.and_then(|m| m.usage),
                env.response.and_then(|r| r.usage),
                env.usage_metadata.map(RawUsage::from),
            ]
            .into_iter()
            .flatten()
            {
                self.usage.merge(u);
            }
        }
    }

    /// Feed raw SSE bytes of a complete stream (tests, offline use). The [`crate::StreamRestorer`]
    /// feeds events itself.
    pub fn feed_sse(&mut self, stream: &[u8]) {
        for ev in crate::sse::split_events(stream) {
            self.feed_json(ev.data.as_bytes());
        }
    }

    pub fn usage(&self) -> Usage {
        self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemini_usage_metadata() {
        // generateContent: one object.
        let u = Usage::from_json(br#"{"candidates":[{"content":{"parts":[{"text":"hi"}]}}],"usageMetadata":{"promptTokenCount":120,"candidatesTokenCount":30,"cachedContentTokenCount":100,"thoughtsTokenCount":12,"totalTokenCount":162}}"#);
        assert_eq!(u.input_tokens, Some(120));
        assert_eq!(u.output_tokens, Some(42));
        assert_eq!(u.cache_read_tokens, Some(100));
        assert_eq!(u.reasoning_tokens, Some(12));
        // streamGenerateContent without alt=sse: an array of chunks with running totals.
        let u = Usage::from_json(br#"[{"usageMetadata":{"promptTokenCount":7,"candidatesTokenCount":1}},{"usageMetadata":{"promptTokenCount":7,"candidatesTokenCount":9}}]"#);
        assert_eq!((u.input_tokens, u.output_tokens), (Some(7), Some(9)));
        // alt=sse: one chunk per event, the last totals win.
        let mut acc = UsageAccumulator::new();
        acc.feed_sse(b"data: {\"usageMetadata\":{\"promptTokenCount\":5,\"candidatesTokenCount\":2}}\r\n\r\ndata: {\"usageMetadata\":{\"promptTokenCount\":5,\"candidatesTokenCount\":8}}\r\n\r\n");
        assert_eq!(
            (acc.usage().input_tokens, acc.usage().output_tokens),
            (Some(5), Some(8))
        );
        // An array that is not usage at all is ignored.
        assert!(Usage::from_json(br#"["usage", 1]"#).is_empty());
    }

    #[test]
    fn each_api() {
        let a = Usage::from_json(br#"{"id":"m","usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":7,"cache_creation_input_tokens":2}}"#);
        assert_eq!(
            (
                a.input_tokens,
                a.output_tokens,
                a.cache_read_tokens,
                a.cache_creation_tokens
            ),
            (Some(10), Some(5), Some(7), Some(2))
        );
        let c = Usage::from_json(br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":1},"completion_tokens_details":{"reasoning_tokens":2}}}"#);
        assert_eq!(
            (
                c.input_tokens,
                c.output_tokens,
                c.cache_read_tokens,
                c.reasoning_tokens
            ),
            (Some(3), Some(4), Some(1), Some(2))
        );
        let mut acc = UsageAccumulator::new();
        acc.feed_sse(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":42}}\n\n");
        assert_eq!(
            (acc.usage().input_tokens, acc.usage().output_tokens),
            (Some(9), Some(42))
        );
        let mut r = UsageAccumulator::new();
        r.feed_sse(b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":6,\"input_tokens_details\":{\"cached_tokens\":4},\"output_tokens_details\":{\"reasoning_tokens\":3}}}}\n\n");
        assert_eq!(r.usage().cache_read_tokens, Some(4));
        assert_eq!(r.usage().reasoning_tokens, Some(3));
        assert!(Usage::from_json(b"{\"usage\":\"x\"}").is_empty());
    }
}
