//! The wire layer driven by the real detection engine (`airlock_detect::Engine::builtin()`).

mod common;

use airlock_wire::*;
use common::*;

#[test]
fn engine_redacts_and_normalizes_in_real_captures() {
    let engine = engine();
    let policy = Actions {
        pii: Action::Redact,
        ..Actions::default()
    };
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
            let at = base
                .find(marker)
                .map(|p| p + marker.len())
                .or_else(|| base.find(marker2).map(|p| p + marker2.len()))
                .expect("a text literal");
            let body = format!("{}{} {}", &base[..at], dirty_lit, &base[at..]);
            let scope = VaultScope::detached();
            let r = inspect(api, body.as_bytes(), engine, &policy, &scope).expect("inspect");
            let out = String::from_utf8(r.body.expect("changed")).unwrap();
            serde_json::from_str::<serde_json::Value>(&out).expect("JSON");
            for v in secret_values() {
                assert!(
                    !out.contains(&v),
                    "{name}: value {}… still in upstream body",
                    &v[..4]
                );
            }
            assert!(
                !out.contains(ZW) && !out.contains(TAGS),
                "{name}: covert characters left"
            );
            assert!(
                out.contains(LOOKALIKE_CLEAN),
                "{name}: look-alike apostrophe not mapped"
            );
            assert!(out.contains("[REDACTED_"), "{name}");
            // restore what the upstream would echo
            let echoed = serde_json::json!({"type":"message","content":[{"type":"text","text": out.clone()}]}).to_string();
            let back = restore_json(Api::AnthropicMessages, echoed.as_bytes(), &scope)
                .unwrap()
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&back).unwrap();
            let text = v["content"][0]["text"].as_str().unwrap();
            for s in secret_values() {
                assert!(text.contains(&s), "{name}: {}… not restored", &s[..4]);
            }
        }
    }
}

#[test]
fn cached_engine_gives_the_same_result_and_hits_on_resend() {
    let cached = CachedDetector::new(airlock_detect::Engine::builtin().expect("engine"));
    let policy = Actions {
        pii: Action::Redact,
        ..Actions::default()
    };
    let body = dirty_claude_body();
    let direct = inspect(
        Api::AnthropicMessages,
        body.as_bytes(),
        engine(),
        &policy,
        &VaultScope::detached(),
    )
    .unwrap();
    let first = inspect(
        Api::AnthropicMessages,
        body.as_bytes(),
        &cached,
        &policy,
        &VaultScope::detached(),
    )
    .unwrap();
    let (h0, m0) = cached.stats();
    let second = inspect(
        Api::AnthropicMessages,
        body.as_bytes(),
        &cached,
        &policy,
        &VaultScope::detached(),
    )
    .unwrap();
    let (h1, m1) = cached.stats();
    assert_eq!(direct.body, first.body);
    assert_eq!(first.body, second.body);
    assert_eq!(first.findings.len(), second.findings.len());
    assert!(m0 > 0 && h0 == 0);
    assert_eq!(m1, m0, "second request fully served from the cache");
    // Long literals with findings come from the detection memory, clean ones are not even
    // decoded: the clean-literal memory answers for them.
    let (clean_hits, _) = cached.clean_stats();
    assert!(h1 > 0 && clean_hits > 0, "{h1} {clean_hits}");
    assert_eq!(h1 + clean_hits, m0);
    assert!(second.body.unwrap().windows(10).any(|w| w == b"[REDACTED_"));
}

/// A prompt made of covert characters: every one is normalised, and the text between them is
/// untouched (each detection takes its own fixes from the sorted list of all fixes).
#[test]
fn many_covert_characters_in_one_text_are_all_normalized() {
    let unit = "a\u{200B}b c\u{202E}d\u{202C} it\u{02BC}s ";
    let text = unit.repeat(3_000);
    let body = serde_json::json!({
        "model": "gpt-5",
        "messages": [{"role": "user", "content": text}],
    })
    .to_string();
    let scope = VaultScope::detached();
    let r = inspect(
        Api::OpenAiChat,
        body.as_bytes(),
        engine(),
        &Actions::default(),
        &scope,
    )
    .expect("inspect");
    let out: serde_json::Value = serde_json::from_slice(&r.body.expect("changed")).unwrap();
    let sent = out["messages"][0]["content"].as_str().unwrap();
    assert_eq!(sent, "ab cd it's ".repeat(3_000));
}
