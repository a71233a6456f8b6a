//! Fuzz the gateway's wire layer with hostile bodies and streams:
//! - `inspect` over arbitrary request bodies for each API (first byte picks the API): never a
//!   panic; a rewritten body is valid JSON whenever the input was; inspecting it again in the
//!   same scope (a resend, answered from the scope's literal memory) gives the same body and
//!   the same findings;
//! - a second body after a 0xFF byte (never part of valid UTF-8): inspected in the same scope
//!   after the first, it gives exactly what a full parse and walk give (what the scope remembers
//!   of the first conversation — `prefix.rs` — changes nothing but the work done);
//! - `restore_json` over arbitrary response bodies;
//! - `StreamRestorer` over arbitrary SSE bytes cut at arbitrary points: never a panic, and a
//!   stream without any placeholder comes out byte for byte.
#![no_main]

use std::sync::LazyLock;

use airlock_detect::Engine;
use airlock_wire::{Actions, Api, CachedDetector, Request, StreamRestorer, VaultScope, inspect, restore_json};
use libfuzzer_sys::fuzz_target;

static DETECTOR: LazyLock<CachedDetector<Engine>> =
    LazyLock::new(|| CachedDetector::new(Engine::builtin().expect("built-in rules compile")));

const APIS: [Api; 5] = [
    Api::AnthropicMessages,
    Api::AnthropicCountTokens,
    Api::OpenAiChat,
    Api::OpenAiResponses,
    Api::GeminiGenerateContent,
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, data)) = data.split_first() else { return };
    let api = APIS[usize::from(sel & 7) % APIS.len()];
    let scope = VaultScope::detached();
    let actions = Actions { pii: airlock_wire::Action::Redact, ..Actions::default() };
    let (rest, second) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let ids = |i: &airlock_wire::Inspection| -> Vec<(String, String, bool, Option<String>)> {
        i.findings
            .iter()
            .map(|f| (f.rule_id.clone(), f.location.path.clone(), f.applied, f.placeholder.clone()))
            .collect()
    };
    if let Ok(r) = inspect(api, rest, &*DETECTOR, &actions, &scope) {
        let again = inspect(api, rest, &*DETECTOR, &actions, &scope).expect("parsed once, parses again");
        assert_eq!(again.body, r.body, "a resend must give the same bytes");
        assert_eq!(ids(&again), ids(&r), "a resend must give the same findings");
        assert_eq!(again.blocked.is_some(), r.blocked.is_some());
        if let Some(body) = &r.body {
            if serde_json::from_slice::<serde_json::Value>(rest).is_ok() {
                assert!(serde_json::from_slice::<serde_json::Value>(body).is_ok(), "rewritten body is not JSON");
            }
            // The rewritten body restores without panicking.
            let _ = restore_json(api, body, &scope);
        }
    }
    if let Some(second) = second {
        if let Ok(with) = inspect(api, second, &*DETECTOR, &actions, &scope) {
            let full = Request::parse(second).expect("parsed once, parses again");
            let fresh = full.inspect(api, &*DETECTOR, &actions, &scope);
            assert_eq!(with.body, fresh.body, "the remembered conversation changed the bytes");
            assert_eq!(ids(&with), ids(&fresh), "the remembered conversation changed the findings");
            assert_eq!(with.blocked, fresh.blocked);
        }
    }
    let _ = restore_json(api, rest, &scope);

    // Streams: cut where the selector byte says.
    let mut sr = StreamRestorer::new(api, scope.clone());
    let mut out = Vec::new();
    let step = (sel as usize >> 2).max(1);
    for chunk in rest.chunks(step) {
        out.extend(sr.push(chunk));
    }
    out.extend(sr.finish());
    if !rest.windows(10).any(|w| w == b"[REDACTED_") && !rest.contains(&b'[') {
        assert_eq!(out, rest, "a stream without placeholders must pass unchanged");
    }
});
