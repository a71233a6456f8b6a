//! The wire layer driven by the real detection engine (`airlock_detect::Engine::builtin()`).

mod common;

use airlock_wire::*;
use common::*;

#[test]
fn engine_redacts_and_normalizes_in_real_captures() {
    let engine = engine();
    let mut policy = Actions::default();
    policy.pii = Action::Redact;
    for (name, api) in [
        ("claude-code-2.1.332", Api::AnthropicMessages),
        ("codex-0.169.0", Api::OpenAiResponses),
        ("qwen-code-0.24.4", Api::OpenAiChat),
        ("opencode-1.18.33", Api::OpenAiChat),
    ] {
        for (_, base) in capture(name) {
            // inject into the first message-ish text: replace the first occurrence of a common word
            let dirty_json = serde_json::to_string(&dirty_text()).unwrap();
            let dirty_lit = &dirty_json[1..dirty_json.len() - 1];
            let marker = "\"text\":\"";
            let marker2 = "\"content\":\"";
            let at = base.find(marker).map(|p| p + marker.len())
                .or_else(|| base.find(marker2).map(|p| p + marker2.len()))
                .expect("a text literal");
            let body = format!("{}{} {}", &base[..at], dirty_lit, &base[at..]);
            let scope = VaultScope::detached();
            let r = inspect(api, body.as_bytes(), engine, &policy, &scope).expect("inspect");
            let out = String::from_utf8(r.body.expect("changed")).unwrap();
            serde_json::from_str::<serde_json::Value>(&out).expect("JSON");
            for v in secret_values() {
                assert!(!out.contains(&v), "{name}: value {}… still in upstream body", &v[..4]);
            }
            assert!(!out.contains(ZW) && !out.contains(TAGS), "{name}: covert characters left");
            assert!(out.contains(LOOKALIKE_CLEAN), "{name}: look-alike apostrophe not mapped");
            assert!(out.contains("[REDACTED_"), "{name}");
            // restore what the upstream would echo
            let echoed = serde_json::json!({"type":"message","content":[{"type":"text","text": out.clone()}]}).to_string();
            let back = restore_json(Api::AnthropicMessages, echoed.as_bytes(), &scope).unwrap().unwrap();
            let v: serde_json::Value = serde_json::from_slice(&back).unwrap();
            let text = v["content"][0]["text"].as_str().unwrap();
            for s in secret_values() {
                assert!(text.contains(&s), "{name}: {}… not restored", &s[..4]);
            }
        }
    }
}
