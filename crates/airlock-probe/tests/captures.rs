//! The differ on real agent traffic (../shared/fixtures/agents): volatile session ids are
//! learned and ignored, a single look-alike character in a 48 KB prompt is found and named.

use airlock_probe::canned::Api;
use airlock_probe::differ::{self, Change, Volatile};
use airlock_probe::recorder::{RecordedRequest, Via};
use serde_json::Value;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/agents/"
);

fn load(name: &str) -> Vec<RecordedRequest> {
    let text = std::fs::read_to_string(format!("{DIR}{name}")).expect("capture present");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let method = v["method"].as_str().unwrap().to_string();
            let path = v["path"].as_str().unwrap_or("").to_string();
            let api = if method == "CONNECT" {
                None
            } else {
                Api::from_path(&method, &path)
            };
            RecordedRequest {
                seq: v["seq"].as_u64().unwrap(),
                ts_ms: 0,
                via: if method == "CONNECT" {
                    Via::Connect
                } else {
                    Via::Direct
                },
                method,
                target: v["target"].as_str().unwrap().to_string(),
                host: v["host"].as_str().unwrap().to_string(),
                path,
                query: v["query"].as_str().unwrap_or("").to_string(),
                headers: v["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| {
                        (
                            h[0].as_str().unwrap().to_string(),
                            h[1].as_str().unwrap().to_string(),
                        )
                    })
                    .collect(),
                body: v["body"].as_str().unwrap().to_string(),
                body_len: v["body_len"].as_u64().unwrap() as usize,
                body_truncated: false,
                status: v["status"].as_u64().unwrap() as u16,
                note: v["note"].as_str().unwrap_or("").to_string(),
                api,
            }
        })
        .collect()
}

/// Replaces the session id everywhere (headers and body), as a second identical run would.
fn with_session(recs: &[RecordedRequest], old: &str, new: &str) -> Vec<RecordedRequest> {
    recs.iter()
        .map(|r| {
            let mut r = r.clone();
            r.body = r.body.replace(old, new);
            for h in &mut r.headers {
                h.1 = h.1.replace(old, new);
            }
            r
        })
        .collect()
}

#[test]
fn every_capture_normalises_and_equals_itself() {
    for name in [
        "claude-code-2.1.332.jsonl",
        "codex-0.169.0.jsonl",
        "gemini-cli-0.61.0.jsonl",
        "opencode-1.18.33.jsonl",
        "qwen-code-0.24.4.jsonl",
    ] {
        let recs = load(name);
        let docs = differ::normalise(&recs, "/tmp/proj", 8787);
        assert!(!docs.is_empty(), "{name}: no model request recognised");
        assert!(differ::compare(&docs, &docs, &Volatile::default()).is_empty());
        // No credential survives normalisation.
        for d in &docs {
            let t = d.value.to_string();
            assert!(!t.contains("fake-key"), "{name}: key leaked");
        }
    }
}

#[test]
fn claude_code_session_ids_are_volatile_and_a_lookalike_apostrophe_is_found() {
    let recs = load("claude-code-2.1.332.jsonl");
    let sid = "f02536a2-f132-43ba-8589-6a949199ed0e";
    assert!(recs.iter().any(|r| r.body.contains(sid)));
    let b0 = differ::normalise(&recs, "/tmp/proj", 8787);
    let b1 = differ::normalise(
        &with_session(&recs, sid, "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"),
        "/tmp/proj",
        8787,
    );
    let b2 = differ::normalise(
        &with_session(&recs, sid, "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"),
        "/tmp/proj",
        8787,
    );
    let vol = Volatile::learn(&b0, &[b1, b2]);
    let learned = vol.describe().join("\n");
    assert!(learned.contains("x-claude-code-session-id"), "{learned}");
    assert!(
        learned.contains("metadata.user_id<json>.session_id"),
        "{learned}"
    );

    // A third run: new session id, and one apostrophe in the system prompt swapped.
    let mut variant = with_session(&recs, sid, "11111111-2222-4333-8444-555555555555");
    let post = variant.iter_mut().find(|r| r.method == "POST").unwrap();
    let needle = "don't retry verbatim";
    let at_byte = post.body.find(needle).expect("phrase in the prompt");
    post.body = post.body.replacen(needle, "don\u{2019}t retry verbatim", 1);
    let variant = differ::normalise(&variant, "/tmp/proj", 8787);

    let diffs = differ::compare(&b0, &variant, &vol);
    assert_eq!(diffs.len(), 1, "{diffs:#?}");
    let d = &diffs[0];
    assert!(d.covert);
    assert!(d.path.to_string().starts_with("system["), "{}", d.path);
    let Change::Text { hunks } = &d.change else {
        panic!()
    };
    assert_eq!(hunks.len(), 1);
    assert_eq!(
        hunks[0].chars[0].to_string(),
        "U+0027 APOSTROPHE → U+2019 RIGHT SINGLE QUOTATION MARK"
    );
    assert!(hunks[0].before.ends_with("don"), "{:?}", hunks[0].before);
    assert!(at_byte > 0);
}
