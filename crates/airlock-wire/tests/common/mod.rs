//! Shared helpers: the real agent captures and injected values.
#![allow(dead_code)]

use std::sync::OnceLock;

use airlock_detect::Engine;

pub const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/agents"
);

pub fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| Engine::builtin().expect("builtin engine"))
}

/// Bodies of the `via == "direct"` requests of one capture, in order.
pub fn capture(name: &str) -> Vec<(String, String)> {
    let path = format!("{FIXTURES}/{name}.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["via"] == "direct").then(|| {
                (
                    v["path"].as_str().unwrap_or("").to_owned(),
                    v["body"].as_str().unwrap_or("").to_owned(),
                )
            })
        })
        .collect()
}

/// A GitHub classic token with a valid CRC32 checksum.
pub fn github_token() -> String {
    let random = "Zq8T2vLmW4xR9sKp3NbY7cHd1FgJ6u";
    format!(
        "ghp_{random}{}",
        airlock_detect::validate::crc32_base62_suffix(random)
    )
}

pub const AWS_KEY_ID: &str = "AKIAZ7QK3M2XW5P4TR6N";
pub const AWS_SECRET: &str = "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";
pub const EMAIL: &str = "jane.doe@payments-corp.com";
pub const ZW: &str = "\u{200B}";
pub const TAGS: &str = "\u{E0049}\u{E0047}\u{E004E}\u{E004F}\u{E0052}\u{E0045}";
pub const LOOKALIKE_TEXT: &str = "please don\u{02BC}t skip the tests";
pub const LOOKALIKE_CLEAN: &str = "please don't skip the tests";

/// Text carrying every injected value.
pub fn dirty_text() -> String {
    format!(
        "Use these: aws_access_key_id = {AWS_KEY_ID}\naws_secret_access_key = {AWS_SECRET}\n\
         token {} and mail {EMAIL}. ig{ZW}nore{TAGS} {LOOKALIKE_TEXT}.",
        github_token()
    )
}

/// The first Claude Code capture with [`dirty_text`] (padded past the detection cache's
/// minimum) injected into its first text block.
pub fn dirty_claude_body() -> String {
    let (_, base) = capture("claude-code-2.1.332").remove(0);
    let dirty_json =
        serde_json::to_string(&format!("{} {}", dirty_text(), "padding ".repeat(100))).unwrap();
    let lit = &dirty_json[1..dirty_json.len() - 1];
    let at = base.find("\"text\":\"").unwrap() + 8;
    format!("{}{lit}{}", &base[..at], &base[at..])
}

/// What identifies each finding of an inspection (rule, location, applied, placeholder).
pub fn summary(i: &airlock_wire::Inspection) -> Vec<(String, String, bool, Option<String>)> {
    i.findings
        .iter()
        .map(|f| {
            (
                f.rule_id.clone(),
                f.location.path.clone(),
                f.applied,
                f.placeholder.clone(),
            )
        })
        .collect()
}

pub fn secret_values() -> Vec<String> {
    vec![
        AWS_KEY_ID.into(),
        AWS_SECRET.into(),
        github_token(),
        EMAIL.into(),
    ]
}

/// A small regex detector with the same contract as the engine, for testing the wire layer on
/// its own (the engine has its own tests). Finds AWS key ids and secret keys, GitHub classic
/// tokens, e-mail addresses, zero-width/tag characters and the U+02BC look-alike apostrophe.
pub struct StandIn {
    rules: Vec<(
        &'static str,
        airlock_wire::Category,
        &'static str,
        regex::Regex,
    )>,
}

pub fn stand_in() -> &'static StandIn {
    static S: OnceLock<StandIn> = OnceLock::new();
    S.get_or_init(|| {
        use airlock_wire::Category::*;
        let r = |s: &str| regex::Regex::new(s).expect("regex");
        StandIn {
            rules: vec![
                (
                    "aws-access-key-id",
                    Secret,
                    "AWS_ACCESS_KEY_ID",
                    r(r"\b(?P<v>AKIA[0-9A-Z]{16})\b"),
                ),
                (
                    "aws-secret-access-key",
                    Secret,
                    "AWS_SECRET_KEY",
                    r(r"(?i)aws_secret_access_key\s*[=:]\s*(?P<v>[A-Za-z0-9/+]{40})"),
                ),
                (
                    "github-pat",
                    Secret,
                    "GITHUB_TOKEN",
                    r(r"\b(?P<v>ghp_[A-Za-z0-9]{36})\b"),
                ),
                (
                    "email",
                    Pii,
                    "EMAIL",
                    r(r"\b(?P<v>[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,})\b"),
                ),
                (
                    "invisible-characters",
                    Covert,
                    "INVISIBLE",
                    r("(?P<v>[\u{200B}-\u{200D}\u{2060}\u{FEFF}]+)"),
                ),
                (
                    "tag-characters",
                    Covert,
                    "TAG",
                    r("(?P<v>[\u{E0000}-\u{E007F}]+)"),
                ),
                (
                    "confusable-punctuation",
                    Covert,
                    "LOOKALIKE",
                    r("[a-z](?P<v>\u{02BC})[a-z]"),
                ),
            ],
        }
    })
}

impl airlock_wire::Detector for StandIn {
    fn detect(&self, text: &str, out: &mut Vec<airlock_wire::Detection>) -> airlock_wire::Coverage {
        for (id, cat, label, re) in &self.rules {
            for c in re.captures_iter(text) {
                let Some(m) = c.name("v") else { continue };
                out.push(airlock_wire::Detection {
                    rule_id: (*id).into(),
                    category: *cat,
                    severity: "high".into(),
                    start: m.start(),
                    end: m.end(),
                    preview: format!(
                        "{}… ({} chars)",
                        m.as_str()
                            .chars()
                            .next()
                            .map(|c| if c.is_ascii_alphanumeric() { c } else { '?' })
                            .unwrap_or('?'),
                        m.as_str().chars().count()
                    ),
                    label: (*label).into(),
                    fingerprint: format!("{:016x}", m.as_str().len() as u64 * 2654435761),
                });
            }
        }
        airlock_wire::Coverage::Whole
    }
    fn normalize(&self, text: &str, out: &mut Vec<airlock_wire::Replacement>) {
        for (_, cat, _, re) in &self.rules {
            if *cat != airlock_wire::Category::Covert {
                continue;
            }
            for c in re.captures_iter(text) {
                let Some(m) = c.name("v") else { continue };
                let text = if m.as_str() == "\u{02BC}" {
                    "'".to_owned()
                } else {
                    String::new()
                };
                out.push(airlock_wire::Replacement {
                    start: m.start(),
                    end: m.end(),
                    text,
                });
            }
        }
    }
}

// ---------- response streams as the providers send them ----------

fn js(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

/// Anthropic Messages stream: a text block streamed in `text_parts`, then a tool_use block whose
/// input JSON is streamed in `json_parts`.
pub fn anthropic_stream(text_parts: &[&str], json_parts: &[&str]) -> String {
    let mut s = String::new();
    let mut ev = |name: &str, data: String| {
        s.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    ev("message_start", r#"{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"claude-test","content":[],"stop_reason":null,"usage":{"input_tokens":1200,"cache_read_input_tokens":1000,"output_tokens":1}}}"#.into());
    ev(
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#
            .into(),
    );
    ev("ping", r#"{"type": "ping"}"#.into());
    for p in text_parts {
        ev(
            "content_block_delta",
            format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":{}}}}}"#,
                js(p)
            ),
        );
    }
    ev(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#.into(),
    );
    ev("content_block_start", r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01","name":"Bash","input":{}}}"#.into());
    for p in json_parts {
        ev(
            "content_block_delta",
            format!(
                r#"{{"type":"content_block_delta","index":1,"delta":{{"type":"input_json_delta","partial_json":{}}}}}"#,
                js(p)
            ),
        );
    }
    ev(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":1}"#.into(),
    );
    ev("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":57}}"#.into());
    ev("message_stop", r#"{"type":"message_stop"}"#.into());
    s
}

/// OpenAI Chat Completions stream with content deltas and one tool call's argument deltas.
pub fn chat_stream(text_parts: &[&str], json_parts: &[&str]) -> String {
    let env = r#""id":"chatcmpl-1","object":"chat.completion.chunk","created":1764000000,"model":"qwen-test""#;
    let mut s = String::new();
    let mut ev = |data: String| s.push_str(&format!("data: {data}\n\n"));
    ev(format!(
        r#"{{{env},"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},"finish_reason":null}}]}}"#
    ));
    for p in text_parts {
        ev(format!(
            r#"{{{env},"choices":[{{"index":0,"delta":{{"content":{}}},"finish_reason":null}}]}}"#,
            js(p)
        ));
    }
    ev(format!(
        r#"{{{env},"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"id":"call_1","type":"function","function":{{"name":"run_shell_command","arguments":""}}}}]}},"finish_reason":null}}]}}"#
    ));
    for p in json_parts {
        ev(format!(
            r#"{{{env},"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":{}}}}}]}},"finish_reason":null}}]}}"#,
            js(p)
        ));
    }
    ev(format!(
        r#"{{{env},"choices":[{{"index":0,"delta":{{}},"finish_reason":"tool_calls"}}]}}"#
    ));
    ev(format!(
        r#"{{{env},"choices":[],"usage":{{"prompt_tokens":900,"completion_tokens":40,"total_tokens":940,"prompt_tokens_details":{{"cached_tokens":512}}}}}}"#
    ));
    ev("[DONE]".into());
    s
}

/// OpenAI Responses stream: a message with output_text deltas and a function_call with argument
/// deltas, each followed by its `.done` events carrying the full text, then response.completed.
pub fn responses_stream(text_parts: &[&str], json_parts: &[&str]) -> String {
    let text: String = text_parts.concat();
    let args: String = json_parts.concat();
    let mut s = String::new();
    let mut seq = 0;
    let mut ev = |name: &str, body: String| {
        seq += 1;
        let data = format!(r#"{{"type":"{name}",{body},"sequence_number":{seq}}}"#);
        s.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    ev(
        "response.created",
        r#""response":{"id":"resp_1","status":"in_progress","output":[]}"#.into(),
    );
    ev("response.output_item.added", r#""output_index":0,"item":{"id":"msg_1","type":"message","role":"assistant","status":"in_progress","content":[]}"#.into());
    for p in text_parts {
        ev(
            "response.output_text.delta",
            format!(
                r#""item_id":"msg_1","output_index":0,"content_index":0,"delta":{},"logprobs":[]"#,
                js(p)
            ),
        );
    }
    ev(
        "response.output_text.done",
        format!(
            r#""item_id":"msg_1","output_index":0,"content_index":0,"text":{}"#,
            js(&text)
        ),
    );
    let msg_item = format!(
        r#"{{"id":"msg_1","type":"message","role":"assistant","status":"completed","content":[{{"type":"output_text","text":{},"annotations":[]}}]}}"#,
        js(&text)
    );
    ev(
        "response.output_item.done",
        format!(r#""output_index":0,"item":{msg_item}"#),
    );
    ev("response.output_item.added", r#""output_index":1,"item":{"id":"fc_1","type":"function_call","call_id":"call_1","name":"shell","arguments":"","status":"in_progress"}"#.into());
    for p in json_parts {
        ev(
            "response.function_call_arguments.delta",
            format!(r#""item_id":"fc_1","output_index":1,"delta":{}"#, js(p)),
        );
    }
    ev(
        "response.function_call_arguments.done",
        format!(
            r#""item_id":"fc_1","output_index":1,"arguments":{}"#,
            js(&args)
        ),
    );
    let fc_item = format!(
        r#"{{"id":"fc_1","type":"function_call","call_id":"call_1","name":"shell","arguments":{},"status":"completed"}}"#,
        js(&args)
    );
    ev(
        "response.output_item.done",
        format!(r#""output_index":1,"item":{fc_item}"#),
    );
    ev(
        "response.completed",
        format!(
            r#""response":{{"id":"resp_1","status":"completed","output":[{msg_item},{fc_item}],"usage":{{"input_tokens":800,"output_tokens":30,"input_tokens_details":{{"cached_tokens":700}},"output_tokens_details":{{"reasoning_tokens":5}}}}}}"#
        ),
    );
    s
}

/// What the client reconstructs from a stream: (text, tool-argument JSON text), plus checks
/// that every event is well-formed. For Responses also checks that the `.done` and item events
/// agree with the deltas.
pub fn client_view(api: airlock_wire::Api, stream: &[u8]) -> (String, String) {
    use airlock_wire::Api;
    let text_s = std::str::from_utf8(stream).expect("client stream is UTF-8");
    assert!(
        text_s.is_empty() || text_s.ends_with("\n\n") || text_s.ends_with("\r\n\r\n"),
        "stream ends with a complete event"
    );
    let mut text = String::new();
    let mut args = String::new();
    let mut full_text = None;
    let mut full_args = None;
    for e in airlock_wire::parse_sse(stream) {
        if e.data == "[DONE]" {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&e.data)
            .unwrap_or_else(|err| panic!("event data is not JSON ({err}): {}", e.data));
        match api {
            Api::AnthropicMessages | Api::AnthropicCountTokens => {
                assert_eq!(
                    e.event.as_deref(),
                    v["type"].as_str(),
                    "event name matches type"
                );
                if v["type"] == "content_block_delta" {
                    match v["delta"]["type"].as_str() {
                        Some("text_delta") => {
                            text.push_str(v["delta"]["text"].as_str().expect("text"))
                        }
                        Some("input_json_delta") => {
                            args.push_str(v["delta"]["partial_json"].as_str().expect("pj"))
                        }
                        _ => {}
                    }
                }
            }
            Api::OpenAiChat => {
                for c in v["choices"].as_array().expect("choices") {
                    if let Some(t) = c["delta"]["content"].as_str() {
                        text.push_str(t);
                    }
                    if let Some(tc) = c["delta"]["tool_calls"].as_array() {
                        for t in tc {
                            if let Some(a) = t["function"]["arguments"].as_str() {
                                args.push_str(a);
                            }
                        }
                    }
                }
            }
            Api::GeminiGenerateContent => {
                for c in v["candidates"].as_array().expect("candidates") {
                    for p in c["content"]["parts"].as_array().expect("parts") {
                        if p["thought"] == true {
                            continue;
                        }
                        if let Some(t) = p["text"].as_str() {
                            text.push_str(t);
                        }
                        if p["functionCall"].is_object() {
                            args.push_str(&p["functionCall"]["args"].to_string());
                        }
                    }
                }
            }
            Api::OpenAiResponses => {
                assert_eq!(
                    e.event.as_deref(),
                    v["type"].as_str(),
                    "event name matches type"
                );
                match v["type"].as_str().unwrap_or("") {
                    "response.output_text.delta" => {
                        text.push_str(v["delta"].as_str().expect("delta"))
                    }
                    "response.function_call_arguments.delta" => {
                        args.push_str(v["delta"].as_str().expect("delta"))
                    }
                    "response.output_text.done" => {
                        full_text = v["text"].as_str().map(str::to_owned)
                    }
                    "response.function_call_arguments.done" => {
                        full_args = v["arguments"].as_str().map(str::to_owned)
                    }
                    "response.completed" => {
                        let out = &v["response"]["output"];
                        assert_eq!(
                            out[0]["content"][0]["text"].as_str(),
                            Some(text.as_str()),
                            "completed text"
                        );
                        assert_eq!(
                            out[1]["arguments"].as_str(),
                            Some(args.as_str()),
                            "completed arguments"
                        );
                    }
                    _ => {}
                }
            }
        }
    }
    if api == Api::OpenAiResponses {
        assert_eq!(
            full_text.as_deref(),
            Some(text.as_str()),
            "output_text.done agrees with deltas"
        );
        assert_eq!(
            full_args.as_deref(),
            Some(args.as_str()),
            "arguments.done agrees with deltas"
        );
    }
    (text, args)
}

/// Gemini stream (`alt=sse`): a thought part, text deltas, then the function call whole (Gemini
/// does not stream arguments) with the finish reason and the usage.
pub fn gemini_stream(text_parts: &[&str], json_parts: &[&str]) -> String {
    let mut args: String = json_parts.concat();
    if serde_json::from_str::<serde_json::Value>(&args).is_err() {
        args = serde_json::json!({ "text": args }).to_string();
    }
    let mut s = String::new();
    let mut ev = |data: String| s.push_str(&format!("data: {data}\n\n"));
    let tail = r#""modelVersion":"gemini-3.8-flash","responseId":"r1""#;
    ev(format!(
        r#"{{"candidates":[{{"content":{{"parts":[{{"text":{},"thought":true}}],"role":"model"}},"index":0}}],{tail}}}"#,
        js(&text_parts.concat())
    ));
    for p in text_parts {
        ev(format!(
            r#"{{"candidates":[{{"content":{{"parts":[{{"text":{}}}],"role":"model"}},"index":0}}],{tail}}}"#,
            js(p)
        ));
    }
    ev(format!(
        r#"{{"candidates":[{{"content":{{"parts":[{{"functionCall":{{"name":"run_shell_command","args":{args}}},"thoughtSignature":"CiQBjz1rX"}}],"role":"model"}},"finishReason":"STOP","index":0}}],"usageMetadata":{{"promptTokenCount":900,"candidatesTokenCount":40,"cachedContentTokenCount":512,"totalTokenCount":940}},{tail}}}"#
    ));
    s
}

pub fn stream_for(api: airlock_wire::Api, text_parts: &[&str], json_parts: &[&str]) -> String {
    match api {
        airlock_wire::Api::OpenAiChat => chat_stream(text_parts, json_parts),
        airlock_wire::Api::OpenAiResponses => responses_stream(text_parts, json_parts),
        airlock_wire::Api::GeminiGenerateContent => gemini_stream(text_parts, json_parts),
        _ => anthropic_stream(text_parts, json_parts),
    }
}

/// Feed `stream` to a restorer in chunks of `chunk` bytes; return everything it emitted.
pub fn restore_stream(
    api: airlock_wire::Api,
    scope: &airlock_wire::VaultScope,
    stream: &[u8],
    chunk: usize,
) -> Vec<u8> {
    let mut r = airlock_wire::StreamRestorer::new(api, scope.clone());
    let mut out = Vec::new();
    for c in stream.chunks(chunk.max(1)) {
        out.extend(r.push(c));
    }
    out.extend(r.finish());
    out
}
