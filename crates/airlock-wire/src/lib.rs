//! LLM API wire formats (Anthropic Messages, OpenAI Chat Completions, OpenAI Responses, SSE):
//! parse, walk text, rewrite, restore.
//!
//! What it does: finds every text-bearing part of a request of each API (system prompts,
//! message text, tool inputs and results, function-call arguments, Responses instructions and
//! input items), runs a [`Detector`] over it, applies the redaction policy ([`Actions`]) and
//! rewrites the body by splicing only the changed string literals into the original bytes, so
//! everything else stays byte-identical and a request sent twice yields the same bytes. The
//! [`Vault`] maps values to deterministic, reversible placeholders; [`restore_json`] and
//! [`StreamRestorer`] put the original values back into responses, including SSE streams where a
//! placeholder is split across events. [`peek`] and [`UsageAccumulator`] give the gateway the
//! model, stream flag and token usage.
//!
//! What it does not do: no HTTP, no I/O, no async, no detection rules of its own (the engine in
//! `airlock-detect` finds things; this crate knows where text lives in each API and how to change
//! it without breaking the agent or the provider's signatures). Image, document and file data is
//! counted, not scanned. `thinking` blocks, objects carrying a `signature` and Responses
//! `reasoning` items are reported on but never modified: the provider verifies them.

mod actions;
mod cache;
mod detector;
mod engine;
mod inspect;
pub mod json;
mod memo;
mod peek;
mod prefix;
mod restore;
mod sse;
mod usage;
mod vault;

pub use actions::{
    Action, Actions, ActionsOverride, CovertAction, DEFAULT_COVERT, DEFAULT_CUSTOM, DEFAULT_PII,
    DEFAULT_SECRET, MAX_FINDINGS_SETTING, RedactionPolicy, Resolved, RuleAction,
};
pub use cache::{CACHE_MIN_TEXT, CachedDetector, DEFAULT_CACHE_ENTRIES};
pub use detector::{Category, Coverage, Detection, Detector, Replacement};
pub use inspect::{Block, FieldError, Finding, Inspection, Location, Request, inspect};
pub use peek::{Peek, peek};
pub use prefix::{MAX_PREFIX_BYTES, MAX_PREFIXES};
pub use restore::restore_json;
pub use sse::{DEFAULT_MAX_EVENT_BYTES, SseEvent, StreamRestorer, StreamStats, parse_sse};
pub use usage::{Usage, UsageAccumulator};
pub use vault::{
    DEFAULT_MAX_TOTAL_BYTES, MAX_PLACEHOLDER_LEN, PLACEHOLDER_PREFIX, SecretValue, Vault,
    VaultConfig, VaultScope, sanitize_label,
};

/// Most findings one request may hold, unless `[redaction] max_findings` says otherwise
/// ([`Actions::max_findings`]). Past it (or when the detector stops scanning a text
/// early, at `airlock_detect::MAX_FINDINGS` findings), Airlock cannot vouch for the rest of the
/// request: it stops inspecting and blocks it ([`LIMIT_RULE_ID`]) rather than forward content
/// it did not look at. Real prompts hold a few findings; a request past this is hostile (a
/// flood of covert characters or decoy secrets, which could hide a real one past the cap) or
/// a bulk export of personal data. Bounds the inspection's time and memory as well: each
/// finding costs a few microseconds and a few hundred bytes.
pub const MAX_REQUEST_FINDINGS: usize = 100_000;

/// The rule id of a block for a request past [`MAX_REQUEST_FINDINGS`].
pub const LIMIT_RULE_ID: &str = "airlock-inspection-limit";

/// The rule id of a block for a part of the request that could not be inspected.
pub const ERROR_RULE_ID: &str = "airlock-inspection-error";

/// The model APIs Airlock speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// `POST /v1/messages`
    AnthropicMessages,
    /// `POST /v1/messages/count_tokens` (same body shape as Messages, no stream)
    AnthropicCountTokens,
    /// `POST /v1/chat/completions`
    OpenAiChat,
    /// `POST /v1/responses`
    OpenAiResponses,
    /// `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent` (Gemini; the
    /// model and whether it streams are in the path)
    GeminiGenerateContent,
}

impl Api {
    /// The API of a request path (query string ignored), e.g. `/v1/messages?beta=true`.
    pub fn from_path(path: &str) -> Option<Api> {
        let p = path.split('?').next().unwrap_or("").trim_end_matches('/');
        match p {
            "/v1/messages" => Some(Api::AnthropicMessages),
            "/v1/messages/count_tokens" => Some(Api::AnthropicCountTokens),
            "/v1/chat/completions" => Some(Api::OpenAiChat),
            "/v1/responses" => Some(Api::OpenAiResponses),
            _ if (p.starts_with("/v1beta/models/") || p.starts_with("/v1/models/"))
                && (p.ends_with(":generateContent") || p.ends_with(":streamGenerateContent")) =>
            {
                Some(Api::GeminiGenerateContent)
            }
            _ => None,
        }
    }

    pub fn is_anthropic(self) -> bool {
        matches!(self, Api::AnthropicMessages | Api::AnthropicCountTokens)
    }
}

/// Why a body could not be handled. Offsets only: never any content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("request body is not valid UTF-8 (at byte {offset})")]
    NotUtf8 { offset: usize },
    #[error("request body is not valid JSON: {reason} at byte {offset}")]
    Json { offset: usize, reason: &'static str },
    #[error("request body is not a JSON object")]
    NotAnObject,
}

/// The HTTP status and body, in `api`'s own error shape, for a request refused by a `block`
/// action. Names the rule and the location, never the value.
pub fn block_error(api: Api, block: &Block) -> (u16, Vec<u8>) {
    let cat = match block.category {
        Category::Secret => "a secret",
        Category::Pii => "personal data",
        Category::Covert => "covert Unicode characters",
        Category::Custom => "content marked confidential",
    };
    let message = match block.rule_id.as_str() {
        LIMIT_RULE_ID => format!(
            "Airlock blocked this request: it holds more findings (secrets, personal data or \
             covert characters) than Airlock inspects in one request; inspection stopped at {} \
             (rule {LIMIT_RULE_ID}). Remove the flagged content and try again.",
            block.location
        ),
        ERROR_RULE_ID => format!(
            "Airlock blocked this request: part of it could not be inspected ({}, rule \
             {ERROR_RULE_ID}). Try again.",
            block.location
        ),
        _ => format!(
            "Airlock blocked this request: {cat} (rule {}) found in {}. Remove it and try again.",
            block.rule_id, block.location
        ),
    };
    let body = if api == Api::GeminiGenerateContent {
        // Google's shape, as Gemini CLI reads it (`error.message`, `error.status`).
        serde_json::json!({
            "error": {"code": 403, "message": message, "status": "PERMISSION_DENIED"},
        })
    } else if api.is_anthropic() {
        serde_json::json!({
            "type": "error",
            "error": {"type": "permission_error", "message": message},
        })
    } else {
        serde_json::json!({
            "error": {
                "message": message,
                "type": "permission_error",
                "param": block.location.path,
                "code": "airlock_blocked",
            }
        })
    };
    (403, body.to_string().into_bytes())
}
