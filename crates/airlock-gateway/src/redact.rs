//! Redaction in the gateway: the detection engine and the placeholder vault shared by every
//! request (and kept across reloads), and the response transforms that put original values
//! back before the agent sees them. The wire-format work itself is `airlock-wire`'s.

use airlock_detect::Engine;
use airlock_wire::{Api, CachedDetector, StreamRestorer, Vault, VaultScope};
use bytes::Bytes;

use crate::upstream::StreamTransform;

/// Largest non-streaming response body buffered for restoration. Beyond it the body is passed
/// through unrestored (and a warning logged): memory stays bounded.
pub const MAX_RESTORE_JSON_BYTES: usize = 32 << 20;

/// Headers agents use to send their session id, checked in order.
pub const SESSION_HEADERS: &[&str] = &[
    "x-claude-code-session-id",
    "session_id",
    "session-id",
    "x-session-id",
];

/// The engine (with its result cache) and the vault. One per gateway.
pub struct Redactor {
    pub detector: CachedDetector<Engine>,
    pub vault: Vault,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("vault", &self.vault)
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// The built-in rules and an empty vault.
    pub fn builtin() -> Result<Redactor, airlock_detect::DetectError> {
        Ok(Redactor {
            detector: CachedDetector::new(Engine::builtin()?),
            vault: Vault::default(),
        })
    }
}

/// What the response needs when the request was rewritten: the API and the vault scope whose
/// placeholders it may contain.
pub struct Restore {
    pub api: Api,
    pub scope: VaultScope,
}

impl Restore {
    /// The transform for a response: SSE restored event by event, anything else buffered
    /// (bounded) and restored as one JSON document.
    pub fn transform(self, sse: bool) -> Box<dyn StreamTransform> {
        if sse {
            Box::new(SseRestore(StreamRestorer::new(self.api, self.scope)))
        } else {
            Box::new(JsonRestore {
                api: self.api,
                scope: self.scope,
                buf: Vec::new(),
                overflow: false,
            })
        }
    }
}

struct SseRestore(StreamRestorer);

impl StreamTransform for SseRestore {
    fn chunk(&mut self, data: Bytes) -> Bytes {
        Bytes::from(self.0.push(&data))
    }
    fn finish(&mut self) -> Bytes {
        Bytes::from(self.0.finish())
    }
}

struct JsonRestore {
    api: Api,
    scope: VaultScope,
    buf: Vec<u8>,
    overflow: bool,
}

impl StreamTransform for JsonRestore {
    fn chunk(&mut self, data: Bytes) -> Bytes {
        if self.overflow {
            return data;
        }
        if self.buf.len() + data.len() > MAX_RESTORE_JSON_BYTES {
            tracing::warn!(
                limit = MAX_RESTORE_JSON_BYTES,
                "response too large to restore placeholders; passed through unrestored"
            );
            self.overflow = true;
            let mut out = std::mem::take(&mut self.buf);
            out.extend_from_slice(&data);
            return Bytes::from(out);
        }
        self.buf.extend_from_slice(&data);
        Bytes::new()
    }

    fn finish(&mut self) -> Bytes {
        let buf = std::mem::take(&mut self.buf);
        if self.overflow || buf.is_empty() {
            return Bytes::from(buf);
        }
        match airlock_wire::restore_json(self.api, &buf, &self.scope) {
            Ok(Some(restored)) => Bytes::from(restored),
            Ok(None) => Bytes::from(buf),
            Err(e) => {
                tracing::debug!(error = %e, "response is not JSON; passed through unrestored");
                Bytes::from(buf)
            }
        }
    }
}
