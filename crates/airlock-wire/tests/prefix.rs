//! The per-scope memory of conversations (`prefix.rs`): a request that repeats the leading
//! elements of a conversation the scope inspected is neither parsed nor walked again there, and
//! gives exactly what a fresh inspection gives — on the real agent captures, turn after turn.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use airlock_wire::*;
use common::*;
use serde_json::{Value, json};

/// The engine, counting its scans.
struct Counting {
    scans: Arc<AtomicUsize>,
}

impl Detector for Counting {
    fn detect(&self, text: &str, out: &mut Vec<Detection>) -> Coverage {
        self.scans.fetch_add(1, Ordering::Relaxed);
        engine().detect(text, out)
    }
    fn normalize(&self, text: &str, out: &mut Vec<Replacement>) {
        engine().normalize(text, out)
    }
}

/// Finds nothing.
struct Blind;

impl Detector for Blind {
    fn detect(&self, _: &str, _: &mut Vec<Detection>) -> Coverage {
        Coverage::Whole
    }
    fn normalize(&self, _: &str, _: &mut Vec<Replacement>) {}
}

fn counting() -> (CachedDetector<Counting>, Arc<AtomicUsize>) {
    let scans = Arc::new(AtomicUsize::new(0));
    let d = CachedDetector::new(Counting {
        scans: scans.clone(),
    });
    (d, scans)
}

fn policy() -> Actions {
    Actions {
        pii: Action::Redact,
        ..Actions::default()
    }
}

/// The conversation array's key of each API.
fn conv_key(api: Api) -> &'static str {
    match api {
        Api::OpenAiResponses => "input",
        _ => "messages",
    }
}

/// One new turn: the user's message carrying every injected value, and the answer.
fn turn(api: Api, n: usize) -> Vec<Value> {
    let text = format!("turn {n}: {} {}", dirty_text(), "padding ".repeat(80));
    match api {
        Api::OpenAiResponses => vec![
            json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}),
            json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": format!("done {n}")}]}),
        ],
        Api::OpenAiChat => vec![
            json!({"role": "user", "content": text}),
            json!({"role": "assistant", "content": format!("done {n}")}),
        ],
        _ => vec![
            json!({"role": "user", "content": [{"type": "text", "text": text}]}),
            json!({"role": "assistant", "content": [{"type": "text", "text": format!("done {n}")}]}),
        ],
    }
}

/// Bodies of successive turns built on the capture's first request: each resends the one
/// before it plus a new turn, as agents do.
fn turns(capture_name: &str, api: Api, count: usize) -> Vec<Vec<u8>> {
    let (_, first) = capture(capture_name).remove(0);
    let mut v: Value = serde_json::from_str(&first).unwrap();
    (0..count)
        .map(|n| {
            let conv = v[conv_key(api)]
                .as_array_mut()
                .expect("a conversation array");
            conv.extend(turn(api, n));
            serde_json::to_vec(&v).unwrap()
        })
        .collect()
}

/// A fresh inspection in the same scope (same placeholders): an uncached engine, a full parse.
fn fresh(api: Api, body: &[u8], actions: &Actions, scope: &VaultScope) -> Inspection {
    Request::parse(body)
        .unwrap()
        .inspect(api, engine(), actions, scope)
}

fn assert_same(a: &Inspection, b: &Inspection) {
    assert_eq!(a.body, b.body, "bodies differ");
    assert_eq!(summary(a), summary(b));
    assert_eq!(a.blocked, b.blocked);
    // (`text_bytes` counts raw or decoded bytes depending on the detection cache: not compared.)
    assert_eq!(
        (a.text_leaves, a.media_parts),
        (b.text_leaves, b.media_parts)
    );
}

const APIS: &[(&str, Api)] = &[
    ("claude-code-2.1.332", Api::AnthropicMessages),
    ("codex-0.169.0", Api::OpenAiResponses),
    ("qwen-code-0.24.4", Api::OpenAiChat),
    ("opencode-1.18.33", Api::OpenAiChat),
];

#[test]
fn turns_of_real_captures_skip_what_they_share_and_equal_a_fresh_inspection() {
    for &(name, api) in APIS {
        let (det, _) = counting();
        let scope = VaultScope::detached();
        let actions = policy();
        let bodies = turns(name, api, 4);
        let mut prev_len = None;
        for (n, b) in bodies.iter().enumerate() {
            let parsed = Request::parse_in(b, api, &scope).unwrap();
            let known = parsed.known_elements();
            match prev_len {
                // Everything the previous turn sent is stepped over.
                Some(len) => assert_eq!(known, len, "{name} turn {n}"),
                None => assert_eq!(known, 0),
            }
            let with = parsed.inspect(api, &det, &actions, &scope);
            let reference = fresh(api, b, &actions, &scope);
            assert_same(&with, &reference);
            let out = String::from_utf8(with.body.clone().expect("redacted")).unwrap();
            for s in secret_values() {
                assert!(!out.contains(&s), "{name}: {}… left in the body", &s[..4]);
            }
            let v: Value = serde_json::from_slice(b).unwrap();
            prev_len = Some(v[conv_key(api)].as_array().unwrap().len());
        }
        assert_eq!(scope.prefix_len(), 1, "{name}: one conversation remembered");
    }
}

#[test]
fn a_resend_is_not_scanned_again() {
    let api = Api::OpenAiChat;
    let (det, scans) = counting();
    let scope = VaultScope::detached();
    let actions = policy();
    let b = turns("qwen-code-0.24.4", api, 3).pop().unwrap();
    let first = inspect(api, &b, &det, &actions, &scope).unwrap();
    let before = scans.load(Ordering::Relaxed);
    let again = inspect(api, &b, &det, &actions, &scope).unwrap();
    assert_same(&again, &first);
    // `tools` is walked again (its literals come from the detection cache or are short); no
    // message text is scanned.
    let v: Value = serde_json::from_slice(&b).unwrap();
    let tools = serde_json::to_string(&v["tools"]).unwrap();
    let rescanned = scans.load(Ordering::Relaxed) - before;
    let fresh_scans = {
        let (d2, s2) = counting();
        let _ = Request::parse(&b)
            .unwrap()
            .inspect(api, &d2, &actions, &VaultScope::detached());
        s2.load(Ordering::Relaxed)
    };
    assert!(
        rescanned < fresh_scans,
        "resend scanned {rescanned} texts, a fresh inspection {fresh_scans} (tools: {} bytes)",
        tools.len()
    );
}

#[test]
fn a_changed_element_ends_the_shared_prefix() {
    let api = Api::OpenAiChat;
    let (det, _) = counting();
    let scope = VaultScope::detached();
    let actions = policy();
    let b = turns("qwen-code-0.24.4", api, 3).pop().unwrap();
    inspect(api, &b, &det, &actions, &scope).unwrap();
    // Same length, one byte changed inside message 3 ("turn 0" -> "turn X").
    let text = String::from_utf8(b.clone()).unwrap();
    let at = text.find("turn 0:").unwrap();
    let mut changed = b.clone();
    changed[at + 5] = b'X';
    let v: Value = serde_json::from_slice(&changed).unwrap();
    let index = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .position(|m| m.to_string().contains("turn X:"))
        .unwrap();
    let parsed = Request::parse_in(&changed, api, &scope).unwrap();
    assert_eq!(parsed.known_elements(), index);
    let with = parsed.inspect(api, &det, &actions, &scope);
    assert_same(&with, &fresh(api, &changed, &actions, &scope));
}

#[test]
fn outcomes_replay_only_under_the_same_detector_policy_and_placeholders() {
    let api = Api::AnthropicMessages;
    let b = turns("claude-code-2.1.332", api, 2).pop().unwrap();
    let actions = policy();

    // Another policy: the secrets now block, even though the redacting outcome is remembered.
    let (det, _) = counting();
    let scope = VaultScope::detached();
    inspect(api, &b, &det, &actions, &scope).unwrap();
    let block = Actions {
        secret: Action::Block,
        ..policy()
    };
    let blocked = inspect(api, &b, &det, &block, &scope).unwrap();
    assert!(blocked.blocked.is_some(), "a block under the new policy");
    // And a block is decided afresh on the next resend too.
    let again = inspect(api, &b, &det, &block, &scope).unwrap();
    assert_eq!(again.blocked, blocked.blocked);

    // Another detector (a rule reload makes a new one), here one that finds nothing: nothing
    // remembered under the old one is replayed.
    let scope = VaultScope::detached();
    let first = inspect(api, &b, &det, &actions, &scope).unwrap();
    assert!(!first.findings.is_empty());
    let blind = CachedDetector::new(Blind);
    let with = inspect(api, &b, &blind, &actions, &scope).unwrap();
    assert!(with.findings.is_empty(), "{:?}", summary(&with));
    assert!(with.body.is_none());

    // Placeholders the scope has since evicted: redacted afresh, every one restorable.
    let vault = Vault::new(VaultConfig {
        max_entries_per_scope: 12,
        ..VaultConfig::default()
    });
    let scope = vault.scope("k");
    let (det, _) = counting();
    inspect(api, &b, &det, &actions, &scope).unwrap();
    let sent = scope.len();
    assert!(sent > 0 && sent <= 12, "{sent} values");
    for i in 0..24 {
        scope.placeholder("OTHER", &format!("other-value-{i}"));
    }
    let with = inspect(api, &b, &det, &actions, &scope).unwrap();
    for f in with.findings.iter().filter(|f| f.placeholder.is_some()) {
        let ph = f.placeholder.as_deref().unwrap();
        assert!(scope.lookup(ph).is_some(), "{ph} sent but not restorable");
    }
    let out = String::from_utf8(with.body.unwrap()).unwrap();
    for s in secret_values() {
        assert!(!out.contains(&s), "{}… left in the body", &s[..4]);
    }
}

#[test]
fn a_scope_keeps_a_few_conversations() {
    let api = Api::OpenAiChat;
    let (det, _) = counting();
    let scope = VaultScope::detached();
    let actions = policy();
    let conv = |tag: usize, turns: usize| {
        let mut msgs = vec![json!({"role": "system", "content": format!("session {tag}")})];
        for n in 0..turns {
            msgs.extend(turn(api, n));
        }
        serde_json::to_vec(&json!({"model": "m", "messages": msgs})).unwrap()
    };
    // Two sessions under one key, interleaved: both keep skipping.
    for t in 1..4 {
        for tag in [1, 2] {
            let b = conv(tag, t);
            let p = Request::parse_in(&b, api, &scope).unwrap();
            if t > 1 {
                assert_eq!(
                    p.known_elements(),
                    1 + 2 * (t - 1),
                    "session {tag} turn {t}"
                );
            }
            let with = p.inspect(api, &det, &actions, &scope);
            assert_same(&with, &fresh(api, &b, &actions, &scope));
        }
    }
    assert_eq!(scope.prefix_len(), 2);
    for tag in 3..10 {
        inspect(api, &conv(tag, 1), &det, &actions, &scope).unwrap();
    }
    assert_eq!(scope.prefix_len(), MAX_PREFIXES);
}

#[test]
fn a_duplicated_conversation_key_is_not_remembered() {
    let api = Api::OpenAiChat;
    let (det, _) = counting();
    let scope = VaultScope::detached();
    let m = serde_json::to_string(&turn(api, 0)).unwrap();
    let b = format!(r#"{{"model":"m","messages":{m},"messages":{m}}}"#);
    let first = inspect(api, b.as_bytes(), &det, &policy(), &scope).unwrap();
    assert_eq!(scope.prefix_len(), 0);
    assert_eq!(first.findings.len(), 2 * fresh_count(api, &m));
}

fn fresh_count(api: Api, conv: &str) -> usize {
    let b = format!(r#"{{"model":"m","messages":{conv}}}"#);
    fresh(api, b.as_bytes(), &policy(), &VaultScope::detached())
        .findings
        .len()
}
