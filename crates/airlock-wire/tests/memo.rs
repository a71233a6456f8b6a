//! The per-scope memory of literals that held something (`memo.rs`): a resend replays the
//! outcome byte for byte, and nothing is replayed under another policy, other rules, at another
//! location, or when the literal blocked.
//!
//! These tests parse with [`Request::parse`], which never steps over remembered conversation
//! elements (`tests/prefix.rs` covers that), so every literal reaches the literal memory.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use airlock_wire::*;
use common::*;

/// Finds `SEKRET-xxxxxx` (and, when `extra`, `EXTRA-xxxxxx`) and counts its scans.
struct Marker {
    extra: bool,
    scans: Arc<AtomicUsize>,
}

impl Detector for Marker {
    fn detect(&self, text: &str, out: &mut Vec<Detection>) -> Coverage {
        self.scans.fetch_add(1, Ordering::Relaxed);
        let mut find = |prefix: &str, label: &str| {
            for (i, _) in text.match_indices(prefix) {
                let end = (i + prefix.len() + 6).min(text.len());
                out.push(Detection {
                    rule_id: Arc::from(label),
                    category: Category::Secret,
                    severity: Arc::from("high"),
                    start: i,
                    end,
                    preview: "S****".into(),
                    label: Arc::from(label),
                    fingerprint: String::new(),
                });
            }
        };
        find("SEKRET-", "marker");
        if self.extra {
            find("EXTRA-", "extra");
        }
        Coverage::Whole
    }
    fn normalize(&self, _: &str, _: &mut Vec<Replacement>) {}
}

fn marker(extra: bool) -> (CachedDetector<Marker>, Arc<AtomicUsize>) {
    let scans = Arc::new(AtomicUsize::new(0));
    let d = CachedDetector::new(Marker {
        extra,
        scans: scans.clone(),
    });
    (d, scans)
}

/// An OpenAI Chat conversation: a long tool result holding `secret` (at message `at`) and a
/// tool call whose JSON arguments hold it too.
fn body(secret: &str, at: usize) -> Vec<u8> {
    let long = format!(
        "{}\nAPI_KEY={secret}\nEXTRA-abcdef and more\n{}",
        "line of a config file\n".repeat(40),
        "trailing line\n".repeat(40)
    );
    let mut messages = vec![serde_json::json!({"role": "system", "content": "You are an agent."})];
    for i in 0..at {
        messages.push(serde_json::json!({"role": "user", "content": format!("turn {i}")}));
    }
    messages.push(serde_json::json!({"role": "tool", "tool_call_id": "c1", "content": long}));
    let args = serde_json::json!({"command": format!("echo {secret} {}", "x".repeat(600))});
    messages.push(serde_json::json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "c2", "type": "function", "function": {"name": "Bash", "arguments": args.to_string()}}
    ]}));
    serde_json::to_vec(&serde_json::json!({"model": "gpt-5", "messages": messages})).unwrap()
}

/// [`inspect`] without the conversation memory.
fn inspect_literals(
    api: Api,
    body: &[u8],
    det: &dyn Detector,
    actions: &Actions,
    scope: &VaultScope,
) -> Result<Inspection, WireError> {
    Ok(Request::parse(body)?.inspect(api, det, actions, scope))
}

#[test]
fn resend_is_replayed_byte_for_byte_without_scanning() {
    let (det, scans) = marker(false);
    let scope = VaultScope::detached();
    let policy = Actions::default();
    let b = body("SEKRET-a1b2c3", 2);
    let first = inspect_literals(Api::OpenAiChat, &b, &det, &policy, &scope).unwrap();
    let out = first.body.clone().expect("redacted");
    assert!(!out.windows(13).any(|w| w == b"SEKRET-a1b2c3"));
    assert!(
        scope.memo_len() >= 2,
        "tool result and tool arguments remembered"
    );
    let scanned = scans.load(Ordering::Relaxed);
    let (hits, misses) = det.stats();
    for _ in 0..3 {
        let again = inspect_literals(Api::OpenAiChat, &b, &det, &policy, &scope).unwrap();
        assert_eq!(again.body.as_deref(), Some(&out[..]), "byte-identical");
        assert_eq!(summary(&again), summary(&first));
        assert_eq!(
            (again.text_leaves, again.text_bytes),
            (first.text_leaves, first.text_bytes)
        );
    }
    // Only the short texts (below the cache's minimum) were scanned again; the long literals
    // came from the memo, without even a detection-cache lookup.
    let short_per_request = first.text_leaves - 2;
    assert_eq!(
        scans.load(Ordering::Relaxed),
        scanned + 3 * short_per_request
    );
    assert_eq!(det.stats(), (hits, misses));
}

#[test]
fn another_policy_is_not_replayed_and_a_block_never_is() {
    let (det, _) = marker(false);
    let scope = VaultScope::detached();
    let b = body("SEKRET-a1b2c3", 2);
    let redact = Actions::default();
    let block = Actions {
        secret: Action::Block,
        ..Actions::default()
    };
    assert!(
        inspect_literals(Api::OpenAiChat, &b, &det, &redact, &scope)
            .unwrap()
            .blocked
            .is_none()
    );
    for _ in 0..2 {
        let i = inspect_literals(Api::OpenAiChat, &b, &det, &block, &scope).unwrap();
        assert!(
            i.blocked.is_some(),
            "the block policy must block every time"
        );
    }
    let dry = Actions {
        dry_run: true,
        ..Actions::default()
    };
    let i = inspect_literals(Api::OpenAiChat, &b, &det, &dry, &scope).unwrap();
    assert!(i.body.is_none(), "dry run changes nothing");
    assert!(i.findings.iter().all(|f| !f.applied));
}

#[test]
fn new_rules_are_not_replayed() {
    let scope = VaultScope::detached();
    let policy = Actions::default();
    let b = body("SEKRET-a1b2c3", 2);
    let (old, _) = marker(false);
    let before = inspect_literals(Api::OpenAiChat, &b, &old, &policy, &scope).unwrap();
    assert!(before.findings.iter().all(|f| f.rule_id == "marker"));
    // A reload builds a new detector (a new memo id): its rules apply to resent literals.
    let (new, _) = marker(true);
    let after = inspect_literals(Api::OpenAiChat, &b, &new, &policy, &scope).unwrap();
    assert!(after.findings.iter().any(|f| f.rule_id == "extra"));
    let text = String::from_utf8(after.body.unwrap()).unwrap();
    assert!(!text.contains("EXTRA-abcdef"));
}

#[test]
fn another_location_is_scanned_again() {
    let (det, _) = marker(false);
    let scope = VaultScope::detached();
    let policy = Actions::default();
    let a = inspect(
        Api::OpenAiChat,
        &body("SEKRET-a1b2c3", 2),
        &det,
        &policy,
        &scope,
    )
    .unwrap();
    let b = inspect(
        Api::OpenAiChat,
        &body("SEKRET-a1b2c3", 5),
        &det,
        &policy,
        &scope,
    )
    .unwrap();
    let paths = |i: &Inspection| -> Vec<String> {
        i.findings.iter().map(|f| f.location.path.clone()).collect()
    };
    assert!(paths(&a).iter().any(|p| p.starts_with("messages[3]")));
    assert!(paths(&b).iter().any(|p| p.starts_with("messages[6]")));
    assert!(!paths(&b).iter().any(|p| p.starts_with("messages[3]")));
    // Same value, same scope: same placeholder.
    let ph = |i: &Inspection| i.findings[0].placeholder.clone();
    assert_eq!(ph(&a), ph(&b));
}

/// With the real engine and the real Claude Code capture: the memo gives exactly what a scan
/// gives, for every secret of the shared test set.
#[test]
fn real_engine_replay_equals_fresh_scan() {
    let cached = CachedDetector::new(airlock_detect::Engine::builtin().expect("engine"));
    let policy = Actions {
        pii: Action::Redact,
        ..Actions::default()
    };
    let body = dirty_claude_body();
    let scope = VaultScope::detached();
    let first = inspect(
        Api::AnthropicMessages,
        body.as_bytes(),
        &cached,
        &policy,
        &scope,
    )
    .unwrap();
    assert!(scope.memo_len() >= 1);
    let replay = inspect(
        Api::AnthropicMessages,
        body.as_bytes(),
        &cached,
        &policy,
        &scope,
    )
    .unwrap();
    // A fresh scan in the same scope (same placeholders) by an uncached engine.
    let fresh = inspect(
        Api::AnthropicMessages,
        body.as_bytes(),
        engine(),
        &policy,
        &scope,
    )
    .unwrap();
    assert_eq!(replay.body, first.body);
    assert_eq!(replay.body, fresh.body);
    assert_eq!(summary(&replay), summary(&fresh));
    let out = String::from_utf8(replay.body.unwrap()).unwrap();
    for s in secret_values() {
        assert!(!out.contains(&s), "{}… left in the body", &s[..4]);
    }
}

/// A remembered outcome whose placeholder the scope has since evicted is not replayed: the
/// literal is redacted afresh, so every placeholder sent upstream can still be restored.
#[test]
fn evicted_placeholders_are_not_replayed() {
    let (det, _) = marker(false);
    let vault = Vault::new(VaultConfig {
        max_entries_per_scope: 3,
        ..VaultConfig::default()
    });
    let scope = vault.scope("user:a");
    let policy = Actions::default();
    let b = body("SEKRET-a1b2c3", 2);
    let first = inspect_literals(Api::OpenAiChat, &b, &det, &policy, &scope).unwrap();
    let ph = first.findings[0].placeholder.clone().unwrap();
    assert!(scope.lookup(&ph).is_some());
    for i in 0..10 {
        scope.placeholder("OTHER", &format!("value-{i}"));
    }
    assert!(scope.lookup(&ph).is_none(), "evicted");
    let again = inspect_literals(Api::OpenAiChat, &b, &det, &policy, &scope).unwrap();
    for f in &again.findings {
        let p = f.placeholder.as_deref().unwrap();
        assert_eq!(scope.lookup(p).unwrap().expose(), "SEKRET-a1b2c3");
    }
}
