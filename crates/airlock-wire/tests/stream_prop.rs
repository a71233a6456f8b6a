//! Placeholders split anywhere across deltas and network chunks are restored, and the client
//! always receives valid events.

mod common;

use airlock_wire::*;
use common::*;
use proptest::prelude::*;

const APIS: [Api; 4] = [
    Api::AnthropicMessages,
    Api::OpenAiChat,
    Api::OpenAiResponses,
    Api::GeminiGenerateContent,
];

/// A scope with values that need JSON escaping and non-ASCII text.
fn scope() -> (VaultScope, Vec<(String, String)>) {
    let s = VaultScope::detached();
    let vals = [
        ("GITHUB_TOKEN", github_token()),
        ("AWS_ACCESS_KEY_ID", AWS_KEY_ID.to_owned()),
        ("PASSWORD", "p@ss\"w\\ord\n\u{20ac}\t".to_owned()),
        ("EMAIL", EMAIL.to_owned()),
    ];
    let pairs = vals
        .iter()
        .map(|(l, v)| (s.placeholder(l, v).to_string(), v.clone()))
        .collect();
    (s, pairs)
}

fn restored(text: &str, pairs: &[(String, String)]) -> String {
    let mut t = text.to_owned();
    for (ph, v) in pairs {
        t = t.replace(ph.as_str(), v);
    }
    t
}

fn split_at_points(text: &str, points: &[usize]) -> Vec<String> {
    let mut cuts: Vec<usize> = points
        .iter()
        .map(|&p| {
            let mut p = p % (text.len() + 1);
            while !text.is_char_boundary(p) {
                p -= 1;
            }
            p
        })
        .collect();
    cuts.push(0);
    cuts.push(text.len());
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .map(|w| text[w[0]..w[1]].to_owned())
        .collect()
}

fn check(
    api: Api,
    scope: &VaultScope,
    pairs: &[(String, String)],
    text: &str,
    parts: &[String],
    chunk: usize,
    crlf: bool,
) {
    let args_text = serde_json::json!({ "q": text }).to_string();
    let aparts = split_at_points(
        &args_text,
        &parts
            .iter()
            .map(String::len)
            .scan(0, |a, l| {
                *a += l;
                Some(*a)
            })
            .collect::<Vec<_>>(),
    );
    let tp: Vec<&str> = parts.iter().map(String::as_str).collect();
    let ap: Vec<&str> = aparts.iter().map(String::as_str).collect();
    let mut stream = stream_for(api, &tp, &ap);
    if crlf {
        stream = stream.replace('\n', "\r\n");
    }
    let out = restore_stream(api, scope, stream.as_bytes(), chunk);
    let out = if crlf {
        String::from_utf8(out)
            .unwrap()
            .replace("\r\n", "\n")
            .into_bytes()
    } else {
        out
    };
    let (t, a) = client_view(api, &out);
    let want = restored(text, pairs);
    assert_eq!(t, want, "{api:?} text");
    let av: serde_json::Value = serde_json::from_str(&a).expect("client arguments are JSON");
    assert_eq!(av["q"].as_str(), Some(want.as_str()), "{api:?} arguments");
}

#[test]
fn placeholder_split_at_every_boundary() {
    let (scope, pairs) = scope();
    let text = format!("a{}b[x]{}é[", pairs[2].0, pairs[0].0);
    for api in APIS {
        // every split of the text into two deltas
        for i in 0..=text.len() {
            if !text.is_char_boundary(i) {
                continue;
            }
            let parts = vec![text[..i].to_owned(), text[i..].to_owned()];
            check(api, &scope, &pairs, &text, &parts, usize::MAX, false);
        }
        // every byte boundary of the SSE stream (deltas of about 6 bytes, so that the
        // placeholders are split across several of them)
        let parts = split_at_points(&text, &(0..text.len()).step_by(6).collect::<Vec<_>>());
        let tp: Vec<&str> = parts.iter().map(String::as_str).collect();
        let stream = stream_for(api, &tp, &tp);
        let want = restore_stream(api, &scope, stream.as_bytes(), usize::MAX);
        for j in 0..=stream.len() {
            let mut r = StreamRestorer::new(api, scope.clone());
            let mut out = r.push(&stream.as_bytes()[..j]);
            out.extend(r.push(&stream.as_bytes()[j..]));
            out.extend(r.finish());
            assert_eq!(out, want, "{api:?} split at byte {j}");
        }
        let (t, _) = client_view(api, &want);
        assert_eq!(t, restored(&text, &pairs));
    }
}

#[test]
fn untouched_stream_is_byte_identical() {
    let (scope, _) = scope();
    for api in APIS {
        let stream = stream_for(
            api,
            &["Hello ", "[world]", " and [RE", "D] ok"],
            &["{\"a\":", "\"[b]\"}"],
        );
        let out = restore_stream(api, &scope, stream.as_bytes(), 3);
        let (t, _) = client_view(api, &out);
        assert_eq!(t, "Hello [world] and [RED] ok");
        // with an empty scope nothing is even parsed
        let empty = VaultScope::detached();
        assert_eq!(
            restore_stream(api, &empty, stream.as_bytes(), 5),
            stream.as_bytes()
        );
    }
    // no '[' anywhere: byte for byte even with a populated scope
    let stream = anthropic_stream(&["Hello ", "world"], &["{\"a\":1}"]);
    assert_eq!(
        restore_stream(Api::AnthropicMessages, &scope, stream.as_bytes(), 4),
        stream.as_bytes()
    );
}

fn segment() -> impl Strategy<Value = usize> {
    0usize..14
}

fn render(segs: &[usize], pairs: &[(String, String)]) -> String {
    const LIT: [&str; 9] = [
        "hello ",
        "[",
        "[RED",
        "[REDACTED_",
        "]",
        "é",
        "日本",
        "_1",
        "[REDACTED_NOPE_9]",
    ];
    segs.iter()
        .map(|&s| {
            if s < LIT.len() {
                LIT[s].to_owned()
            } else {
                pairs[(s - LIT.len()) % pairs.len()].0.clone()
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn random_delta_and_chunk_splits(
        segs in proptest::collection::vec(segment(), 1..24),
        points in proptest::collection::vec(0usize..400, 0..12),
        chunk in 1usize..40,
        api_i in 0usize..3,
        crlf in any::<bool>(),
    ) {
        let (scope, pairs) = scope();
        let text = render(&segs, &pairs);
        let parts = split_at_points(&text, &points);
        check(APIS[api_i], &scope, &pairs, &text, &parts, chunk, crlf);
    }
}

/// A long line arriving a byte at a time is searched for its end once, not once per byte (the
/// search was quadratic in the line's length: 114 KB in 1-byte pieces took 95 ms, 456 KB 1.6 s;
/// found by the `wire` fuzz target).
#[test]
fn a_long_line_in_small_pieces_is_searched_once() {
    for (line, piece) in [(100_000usize, 1usize), (100_000, 7), (300_000, 3)] {
        let mut stream = format!("data: {{\"x\":\"{}\"}}", "a".repeat(line)).into_bytes();
        stream.extend_from_slice(b"\r\n\r\ndata: [DONE]\n\n");
        let mut sr = StreamRestorer::new(Api::OpenAiChat, VaultScope::detached());
        let mut out = Vec::new();
        for p in stream.chunks(piece) {
            out.extend(sr.push(p));
        }
        out.extend(sr.finish());
        assert_eq!(out, stream, "passed through unchanged");
        let searched = sr.stats().searched;
        assert!(
            searched <= 2 * stream.len() as u64,
            "{searched} bytes searched for a {} byte stream in {piece}-byte pieces",
            stream.len()
        );
    }
}
